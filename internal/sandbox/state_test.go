package sandbox

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestStateRoundTrip(t *testing.T) {
	s := NewState()
	s.TapFD, s.APIFD, s.HelperCtlFD, s.HelperPID = 5, 6, 7, 4242
	s.ExitFD, s.ReadyFD = 3, 4
	s.FDs = map[string]int{"target pidfd": 9}
	s.UsernsPath = "/proc/42/ns/user"
	s.Keep = []string{"/tmp/x y/resolv.conf"}
	s.Seccomp = true
	s.Data = json.RawMessage(`{"config":{"mtu":65520,"paths":["/tmp/a b"]}}`)
	s.Args = []string{"not", "encoded"}
	v, err := encodeState(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeState(v)
	if err != nil {
		t.Fatalf("decode %s: %v", v, err)
	}
	s.Args = nil
	if !reflect.DeepEqual(got, s) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, s)
	}
}

func TestStateDefaultsAndErrors(t *testing.T) {
	got, err := decodeState(`{}`)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, NewState()) {
		t.Errorf("empty state = %+v, want every descriptor -1", got)
	}
	for _, v := range []string{
		``, `[]`, `{"tap_fd": -2}`, `{"helper_pid": -1}`, `{"unknown": 1}`,
		`{"tap_fd": 3} {"tap_fd": 4}`, `{"fds": {"x": -5}}`, `{"tap_fd": "3"}`,
	} {
		if s, err := decodeState(v); err == nil {
			t.Errorf("decode %q = %+v, want an error", v, s)
		}
	}
}

func TestStateValidateOpen(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := NewState()
	s.ReadyFD = int(w.Fd())
	if err := s.validate(true); err != nil {
		t.Errorf("open descriptor: %v", err)
	}
	w.Close()
	if err := s.validate(true); err == nil || !strings.Contains(err.Error(), "ready fd") {
		t.Errorf("closed descriptor: %v", err)
	}
}

// TestResumedNotAsked: a process not started by Exec is not resumed.
func TestResumedNotAsked(t *testing.T) {
	s, ok, err := Resumed()
	if ok || err != nil {
		t.Errorf("Resumed() = %+v, %v, %v; want not resumed", s, ok, err)
	}
}
