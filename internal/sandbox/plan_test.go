package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// planOf returns the plan's entries for paths.
func planOf(t *testing.T, paths ...string) []planEntry {
	t.Helper()
	p, err := planKeep(paths)
	if err != nil {
		t.Fatalf("planKeep(%q): %v", paths, err)
	}
	return p.entries
}

// dirsTo lists the directory entries for every parent of p (exclusive),
// as the plan makes them.
func dirsTo(p string) []planEntry {
	var out []planEntry
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := ""
	for _, c := range parts[:len(parts)-1] {
		cur += "/" + c
		out = append(out, planEntry{Kind: kindDir, Path: cur})
	}
	return out
}

func TestPlanRegularFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(f, []byte("nameserver 192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := append(dirsTo(f), planEntry{Kind: kindFile, Path: f})
	if got := planOf(t, f); !reflect.DeepEqual(got, want) {
		t.Errorf("plan:\n got %+v\nwant %+v", got, want)
	}
}

// TestPlanSymlinkChain follows links that leave and re-enter directories,
// relative and absolute, the way /etc/resolv.conf -> ../var/run/... ->
// /run/... chains do on real systems.
func TestPlanSymlinkChain(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "real", "sub"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "a"), 0o755))
	file := filepath.Join(dir, "real", "sub", "resolv.conf")
	must(os.WriteFile(file, []byte("x"), 0o644))
	// a/link -> ../alias/sub/resolv.conf, alias -> <dir>/real (absolute)
	must(os.Symlink("../alias/sub/resolv.conf", filepath.Join(dir, "a", "link")))
	must(os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "alias")))

	start := filepath.Join(dir, "a", "link")
	want := dirsTo(start)
	want = append(want,
		planEntry{Kind: kindSymlink, Path: start, Target: "../alias/sub/resolv.conf"},
		planEntry{Kind: kindSymlink, Path: filepath.Join(dir, "alias"), Target: filepath.Join(dir, "real")},
		planEntry{Kind: kindDir, Path: filepath.Join(dir, "real")},
		planEntry{Kind: kindDir, Path: filepath.Join(dir, "real", "sub")},
		planEntry{Kind: kindFile, Path: file},
	)
	got := planOf(t, start, file) // the second path adds nothing new
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plan:\n got %+v\nwant %+v", got, want)
	}
	text, err := (&plan{entries: got}).encode()
	if err != nil {
		t.Fatal(err)
	}
	checkConstructorAccepts(t, text)
}

func TestPlanSkipsWhatIsBoundWhole(t *testing.T) {
	// Whatever /etc/resolv.conf is on this machine, nothing under /etc or
	// /run may appear in the plan.
	for _, e := range planOf(t, "/etc/resolv.conf", "/etc/hostname", "/run") {
		if boundWhole(e.Path) {
			t.Errorf("plan has %+v, which the root binds whole", e)
		}
	}
}

func TestPlanMissingFileIsLeftOut(t *testing.T) {
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "missing"), filepath.Join(dir, "dangling"), filepath.Join(dir, "missing", "deeper")} {
		if got := planOf(t, p); len(got) != 0 {
			t.Errorf("plan for %s: %+v, want nothing", p, got)
		}
	}
}

func TestPlanErrors(t *testing.T) {
	dir := t.TempDir()
	loop := filepath.Join(dir, "loop")
	if err := os.Symlink(loop, loop); err != nil {
		t.Fatal(err)
	}
	if _, err := planKeep([]string{loop}); !errors.Is(err, unix.ELOOP) {
		t.Errorf("link loop: %v, want ELOOP", err)
	}
	if _, err := planKeep([]string{dir}); err == nil || !strings.Contains(err.Error(), "only files can be kept") {
		t.Errorf("directory: %v", err)
	}
	if _, err := planKeep([]string{"relative/path"}); err == nil {
		t.Error("relative path accepted")
	}
}
