package sandbox

import (
	"reflect"
	"testing"
)

// FuzzDecodeState: the state decoder takes any text without panicking,
// and what it accepts encodes and decodes to the same State.
func FuzzDecodeState(f *testing.F) {
	for _, seed := range []string{
		`{}`,
		`{"tap_fd":5,"api_fd":6,"helper_ctl_fd":7,"helper_pid":42,"exit_fd":3,"ready_fd":4}`,
		`{"fds":{"target":9},"userns_path":"/proc/1/ns/user","keep":["/tmp/r"],"seccomp":true}`,
		`{"tap_fd":-2}`,
		`{"tap_fd":1e3}`,
		`{} {}`,
		`null`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		s, err := decodeState(v)
		if err != nil {
			return
		}
		enc, err := encodeState(s)
		if err != nil {
			t.Fatalf("decoded %q as %+v but cannot encode it: %v", v, s, err)
		}
		s2, err := decodeState(enc)
		if err != nil {
			t.Fatalf("%q -> %+v -> %q: %v", v, s, enc, err)
		}
		if !reflect.DeepEqual(s, s2) {
			t.Fatalf("%q -> %+v -> %q -> %+v", v, s, enc, s2)
		}
	})
}
