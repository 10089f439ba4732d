package idmap

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseSubIDs(t *testing.T) {
	in := "# comment\nalice:100000:65536\nbob:200000:65536\n1001:300000:1000\nalice:500000:10\nbroken line\nalice:x:5\nalice:1:0\n"
	got, err := ParseSubIDs(strings.NewReader(in), "alice", 1001)
	if err != nil {
		t.Fatal(err)
	}
	want := []Range{{100000, 65536}, {300000, 1000}, {500000, 10}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseSubIDs = %v, want %v", got, want)
	}
}

func FuzzParseSubIDs(f *testing.F) {
	f.Add("alice:100000:65536\n", "alice", uint32(1000))
	f.Add("1000:4294967295:1\n", "", uint32(1000))
	f.Fuzz(func(t *testing.T, in, name string, id uint32) {
		rs, err := ParseSubIDs(strings.NewReader(in), name, id)
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.Count == 0 || uint64(r.Start)+uint64(r.Count) > 1<<32 {
				t.Fatalf("bad range %+v from %q", r, in)
			}
		}
	})
}

func TestNewPlan(t *testing.T) {
	p, err := NewPlan(Single, 1000, 1001, "alice", Files{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.UIDs, []Entry{{0, 1000, 1}}) || !reflect.DeepEqual(p.GIDs, []Entry{{0, 1001, 1}}) || p.Key() != "single" {
		t.Fatalf("single plan %+v", p)
	}
	dir := t.TempDir()
	sub := filepath.Join(dir, "subuid")
	if err := os.WriteFile(sub, []byte("alice:100000:65536\nalice:300000:10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	files := Files{SubUID: sub, SubGID: sub, NewUIDMap: "true", NewGIDMap: "true"}
	p, err = NewPlan(Subuid, 1000, 1001, "alice", files)
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{{0, 1000, 1}, {1, 100000, 65536}, {65537, 300000, 10}}
	if !reflect.DeepEqual(p.UIDs, want) {
		t.Fatalf("subuid plan %+v, want %+v", p.UIDs, want)
	}
	if !Mapped(p.UIDs, 65546) || Mapped(p.UIDs, 65547) || !Mapped(p.UIDs, 0) {
		t.Errorf("Mapped is wrong for %+v", p.UIDs)
	}
	if !strings.HasPrefix(p.Key(), "subuid-u0.1000.1-u1.100000.65536") {
		t.Errorf("Key() = %q", p.Key())
	}

	_, err = NewPlan(Subuid, 1002, 1002, "bob", files)
	if err == nil || !strings.Contains(err.Error(), `no entry for user "bob"`) {
		t.Errorf("missing entry: %v", err)
	}
	files.NewUIDMap = "no-such-newuidmap"
	_, err = NewPlan(Subuid, 1000, 1001, "alice", files)
	if err == nil || !strings.Contains(err.Error(), "uidmap package") {
		t.Errorf("missing helper: %v", err)
	}
	_, err = NewPlan(Subuid, 1000, 1001, "alice", Files{SubUID: filepath.Join(dir, "none")})
	if err == nil || !strings.Contains(err.Error(), "usermod --add-subuids") {
		t.Errorf("missing file: %v", err)
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": Single, "single": Single, "auto": Single, "subuid": Subuid} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseMode("keep-id"); err == nil {
		t.Error("ParseMode(keep-id) should fail")
	}
}

func TestApplyReportsHelperError(t *testing.T) {
	p := Plan{Mode: Subuid, UIDs: []Entry{{0, 1, 1}}, GIDs: []Entry{{0, 1, 1}}}
	err := p.Apply(1, Files{NewUIDMap: "false", NewGIDMap: "false"})
	if err == nil || !strings.Contains(err.Error(), "false 1 0 1 1") {
		t.Fatalf("Apply with a failing helper: %v", err)
	}
}
