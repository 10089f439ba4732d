package state

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStoreLifecycle(t *testing.T) {
	s := Store{Root: t.TempDir()}
	c, err := s.Create(Record{ID: "abc123def456", Name: "web", Command: []string{"sh"}, Created: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(Record{ID: "111111111111", Name: "web"}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("duplicate name: %v", err)
	}
	for _, ref := range []string{"abc123def456", "abc", "web"} {
		e, err := s.Find(ref)
		if err != nil || e.ID != "abc123def456" || !e.Running {
			t.Errorf("Find(%q) = %+v, %v", ref, e, err)
		}
	}
	if _, err := s.Find("zzz"); err == nil || !strings.Contains(err.Error(), "slirprun ps") {
		t.Errorf("Find(zzz): %v", err)
	}
	if _, err := s.Adopt("abc123def456"); err == nil {
		t.Error("Adopt took a held lock")
	}
	c.Unlock()
	if !WaitUnlocked(c.Dir, time.Second) {
		t.Error("lock still held after Unlock")
	}
	if err := MarkExited(c.Dir, 137); err != nil {
		t.Fatal(err)
	}
	e, _ := s.Find("web")
	if e.Running || !e.Exited || e.ExitCode != 137 {
		t.Errorf("after MarkExited: %+v", e)
	}
	c2, err := s.Adopt("abc123def456")
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Remove(); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.List(); len(l) != 0 {
		t.Errorf("List after Remove: %+v", l)
	}
}

func TestValidName(t *testing.T) {
	for name, ok := range map[string]bool{"web": true, "a.b-c_1": true, "": false, "-x": false, "a/b": false, strings.Repeat("x", 64): false} {
		if err := ValidName(name); (err == nil) != ok {
			t.Errorf("ValidName(%q) = %v", name, err)
		}
	}
}

func TestDefaultRoot(t *testing.T) {
	t.Setenv(EnvDir, "")
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/5")
	if got := DefaultRoot(); got != "/run/user/5/slirprun" {
		t.Errorf("DefaultRoot() = %q", got)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	if got := DefaultRoot(); !strings.HasPrefix(got, filepath.Join(os.TempDir(), "slirprun-")) {
		t.Errorf("DefaultRoot() without XDG_RUNTIME_DIR = %q", got)
	}
	t.Setenv(EnvDir, "/x")
	if got := DefaultRoot(); got != "/x" {
		t.Errorf("DefaultRoot() with %s = %q", EnvDir, got)
	}
}
