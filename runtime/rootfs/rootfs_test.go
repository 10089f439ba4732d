package rootfs

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTargetStaysInRoot: mount points are created and resolved inside the
// new root even when the image's symlinks point elsewhere.
func TestTargetStaysInRoot(t *testing.T) {
	base := t.TempDir()
	rootDir := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{filepath.Join(rootDir, "etc"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// /etc/resolv.conf -> the host's outside dir; /run -> ../../outside.
	if err := os.Symlink(filepath.Join(outside, "resolv.conf"), filepath.Join(rootDir, "etc", "resolv.conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../outside", filepath.Join(rootDir, "run")); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(rootDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	r := &root{fd: fd}
	for _, tc := range []struct {
		path string
		dir  bool
	}{
		{"/etc/resolv.conf", false},
		{"/run/secrets/x", true},
		{"/data/vol", true},
	} {
		tfd, err := r.target(tc.path, tc.dir)
		if err != nil {
			t.Fatalf("target(%s): %v", tc.path, err)
		}
		got, _ := os.Readlink(fdPath(tfd))
		unix.Close(tfd)
		if rel, err := filepath.Rel(rootDir, got); err != nil || rel == ".." || filepath.IsAbs(rel) || len(rel) >= 2 && rel[:2] == ".." {
			t.Errorf("target(%s) resolved to %s, outside %s", tc.path, got, rootDir)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("created %v outside the root", ents)
	}
}
