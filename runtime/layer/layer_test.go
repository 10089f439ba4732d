package layer

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/runtime/image"
	"github.com/slirp-dev/slirp/runtime/image/imagetest"
)

func apply(t *testing.T, dir string, files []imagetest.File, opts Options) error {
	t.Helper()
	raw, err := imagetest.Tar(files)
	if err != nil {
		t.Fatal(err)
	}
	return Apply(bytes.NewReader(raw), dir, opts)
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func isWhiteout(t *testing.T, p string) bool {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

func TestApplyOverlayForm(t *testing.T) {
	lower, upper := t.TempDir(), t.TempDir()
	if err := apply(t, lower, []imagetest.File{
		imagetest.Dir("etc"), imagetest.Reg("etc/a", "a"), imagetest.Reg("bin/tool", "t"),
		imagetest.Reg("srv/data", "lower data"),
	}, Options{}); err != nil {
		t.Fatal(err)
	}
	owned := imagetest.Reg("home/u/f", "mine")
	owned.UID, owned.GID = 1000, 1000
	exe := imagetest.Reg("bin/run", "#!/bin/sh")
	exe.Mode = 0o4755
	err := apply(t, upper, []imagetest.File{
		imagetest.Whiteout("bin", "tool"),
		imagetest.Reg("etc/b", "b"), imagetest.Opaque("etc"),
		imagetest.Reg("new/x", "x"), imagetest.Whiteout("new", "x"), // own entry: kept
		imagetest.Symlink("link", "/etc/b"), imagetest.Hardlink("new/x-link", "new/x"),
		imagetest.Hardlink("srv/copy", "srv/data"), owned, exe,
		{Name: "fifo", Type: tar.TypeFifo, Mode: 0o600},
		{Name: "dev/null", Type: tar.TypeChar, Mode: 0o666},
		{Name: "etc/.wh..wh.plnk.123", Type: tar.TypeReg},
		{Name: "x/attr", Type: tar.TypeReg, Mode: 0o644, Xattrs: map[string]string{"user.test": "v", "user.overlay.opaque": "y", "trusted.secret": "s"}},
	}, Options{Lowers: []string{lower}})
	if err != nil {
		t.Fatal(err)
	}
	if !isWhiteout(t, filepath.Join(upper, "bin/tool")) {
		t.Error("bin/.wh.tool did not become a 0:0 character device")
	}
	if _, err := os.Lstat(filepath.Join(upper, "bin/.wh.tool")); err == nil {
		t.Error("the whiteout entry itself was written")
	}
	v := make([]byte, 8)
	n, err := unix.Getxattr(filepath.Join(upper, "etc"), "user.overlay.opaque", v)
	if err != nil || string(v[:n]) != "y" {
		t.Errorf("etc not opaque: %q, %v", v[:n], err)
	}
	if mustRead(t, filepath.Join(upper, "etc/b")) != "b" {
		t.Error("etc/b lost")
	}
	if mustRead(t, filepath.Join(upper, "new/x")) != "x" {
		t.Error("a whiteout removed an entry of its own layer")
	}
	if target, _ := os.Readlink(filepath.Join(upper, "link")); target != "/etc/b" {
		t.Errorf("symlink target %q", target)
	}
	var a, b unix.Stat_t
	_ = unix.Stat(filepath.Join(upper, "new/x"), &a)
	_ = unix.Stat(filepath.Join(upper, "new/x-link"), &b)
	if a.Ino != b.Ino {
		t.Error("hard link within the layer is not a link")
	}
	if mustRead(t, filepath.Join(upper, "srv/copy")) != "lower data" {
		t.Error("hard link to a lower layer was not copied")
	}
	if os.Geteuid() == 0 {
		var ost unix.Stat_t
		if err := unix.Stat(filepath.Join(upper, "home/u/f"), &ost); err != nil || ost.Uid != 1000 {
			t.Errorf("owner not kept: %d, %v", ost.Uid, err)
		}
	}
	if st, err := os.Stat(filepath.Join(upper, "bin/run")); err != nil || st.Mode()&os.ModeSetuid == 0 {
		t.Errorf("setuid bit lost (chmod must follow chown): %v", st.Mode())
	}
	if st, err := os.Lstat(filepath.Join(upper, "fifo")); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("fifo: %v %v", st, err)
	}
	if _, err := os.Lstat(filepath.Join(upper, "dev/null")); err == nil {
		t.Error("device node was created")
	}
	if _, err := os.Lstat(filepath.Join(upper, "etc/.wh..wh.plnk.123")); err == nil {
		t.Error("aufs metadata entry was written")
	}
	attr := filepath.Join(upper, "x/attr")
	if n, err := unix.Getxattr(attr, "user.test", v); err != nil || string(v[:n]) != "v" {
		t.Errorf("user.test xattr: %v", err)
	}
	if _, err := unix.Getxattr(attr, "user.overlay.opaque", v); err == nil {
		t.Error("image-supplied user.overlay.* xattr was not escaped")
	}
	if n, err := unix.Getxattr(attr, "user.overlay.overlay.opaque", v); err != nil || string(v[:n]) != "y" {
		t.Errorf("escaped xattr: %v", err)
	}
	if st, _ := os.Stat(filepath.Join(lower, "etc")); !st.ModTime().Equal(imagetest.Epoch) {
		t.Errorf("directory mtime %v, want %v (restored after its children)", st.ModTime(), imagetest.Epoch)
	}
}

func TestApplyStaysInside(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "layer")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A symlink pointing out of the layer must not carry later entries
	// out with it: it resolves inside the layer root.
	err := apply(t, dir, []imagetest.File{
		imagetest.Symlink("escape", "/"), imagetest.Symlink("up", "../.."),
		imagetest.Reg("escape/outside-abs", "x"), imagetest.Reg("up/outside-rel", "x"),
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/outside-abs", filepath.Join(parent, "outside-rel")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("wrote %s outside the layer", p)
		}
	}
	if mustRead(t, filepath.Join(dir, "outside-abs")) != "x" {
		t.Error("entry under an absolute symlink should land in the layer root")
	}
	for _, name := range []string{"../evil", "a/../../evil"} {
		if err := apply(t, dir, []imagetest.File{imagetest.Reg(name, "x")}, Options{}); err == nil {
			t.Errorf("entry %q was accepted", name)
		}
	}
	if err := apply(t, dir, []imagetest.File{imagetest.Reg("a/.wh.", "")}, Options{}); err == nil {
		t.Error("bare .wh. was accepted")
	}
}

func TestApplySquashesUnmappedOwners(t *testing.T) {
	dir := t.TempDir()
	f := imagetest.Reg("f", "x")
	f.UID, f.GID = 1000, 1000
	only := func(uid, gid int) (int, int, bool) { return uid, gid, uid == os.Getuid() && gid == os.Getgid() }
	if err := apply(t, dir, []imagetest.File{f}, Options{Owner: only}); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "f"), &st); err != nil || st.Uid != 0 {
		t.Errorf("unmapped owner became %d (%v), want 0", st.Uid, err)
	}
}

func layerBlob(t *testing.T, dir string, files []imagetest.File, compression string) image.Layer {
	t.Helper()
	out := filepath.Join(dir, "img")
	if err := imagetest.WriteSkopeoDir(out, imagetest.Image{Layers: []imagetest.Layer{{Files: files, Compression: compression}}}, false); err != nil {
		t.Fatal(err)
	}
	img, err := image.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	return img.Layers[0]
}

func TestUnpackVerifies(t *testing.T) {
	for _, comp := range []string{"", "gzip", "zstd"} {
		t.Run("compression="+comp, func(t *testing.T) {
			tmp := t.TempDir()
			l := layerBlob(t, tmp, []imagetest.File{imagetest.Reg("hello", "world")}, comp)
			dst := filepath.Join(tmp, "ok")
			os.Mkdir(dst, 0o755)
			if err := Unpack(l, dst, Options{}); err != nil {
				t.Fatal(err)
			}
			if mustRead(t, filepath.Join(dst, "hello")) != "world" {
				t.Fatal("content")
			}
			bad := l
			bad.DiffID = digest.FromString("something else")
			dst2 := filepath.Join(tmp, "bad")
			os.Mkdir(dst2, 0o755)
			if err := Unpack(bad, dst2, Options{}); err == nil || !strings.Contains(err.Error(), "diff_id") {
				t.Errorf("wrong diff_id: %v", err)
			}
			bad = l
			bad.Digest = digest.FromString("other blob")
			dst3 := filepath.Join(tmp, "bad2")
			os.Mkdir(dst3, 0o755)
			if err := Unpack(bad, dst3, Options{}); err == nil || !strings.Contains(err.Error(), "corrupt") {
				t.Errorf("wrong blob digest: %v", err)
			}
		})
	}
}

func TestCacheEnsure(t *testing.T) {
	tmp := t.TempDir()
	l := layerBlob(t, tmp, []imagetest.File{imagetest.Reg("f", "1")}, "gzip")
	c := Cache{Dir: filepath.Join(tmp, "cache"), Key: "single"}
	dirs, reused, err := c.Ensure([]image.Layer{l}, Options{})
	if err != nil || reused != 0 || len(dirs) != 1 {
		t.Fatalf("first Ensure: %v %d %v", dirs, reused, err)
	}
	dirs2, reused, err := c.Ensure([]image.Layer{l}, Options{})
	if err != nil || reused != 1 || dirs2[0] != dirs[0] {
		t.Fatalf("second Ensure: %v %d %v", dirs2, reused, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(tmp, "cache", "single", "tmp")); len(ents) != 0 {
		t.Errorf("temporary unpack dirs left: %v", ents)
	}
	// A failed unpack leaves nothing in the cache.
	bad := l
	bad.DiffID = digest.FromString("nope")
	if _, _, err := c.Ensure([]image.Layer{bad}, Options{}); err == nil {
		t.Fatal("bad layer accepted")
	}
	if _, err := os.Stat(c.Path(bad)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bad layer reached the cache: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(tmp, "cache", "single", "tmp")); len(ents) != 0 {
		t.Errorf("temporary unpack dirs left after failure: %v", ents)
	}
}

func TestRemoveAllUnreadable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "x")
	os.MkdirAll(filepath.Join(dir, "work", "work", "deep"), 0o755)
	os.Chmod(filepath.Join(dir, "work", "work"), 0)
	if err := RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("still there: %v", err)
	}
}

func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"a/b", "./a", "/abs", "a/../b", "..", "a/./b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n, err := CleanName(name)
		if err != nil {
			return
		}
		if strings.HasPrefix(n, "/") || n == ".." || strings.HasPrefix(n, "../") || strings.Contains(n, "/../") {
			t.Fatalf("CleanName(%q) = %q escapes", name, n)
		}
	})
}

// FuzzApply feeds arbitrary tar streams to Apply; whatever it accepts must
// stay inside the layer directory.
func FuzzApply(f *testing.F) {
	seed, _ := imagetest.Tar([]imagetest.File{
		imagetest.Dir("a"), imagetest.Reg("a/f", "x"), imagetest.Symlink("s", "/"), imagetest.Reg("s/g", "y"),
		imagetest.Whiteout("a", "f"), imagetest.Opaque("a"), imagetest.Hardlink("h", "a/f"),
	})
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "layer")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		_ = Apply(bytes.NewReader(data), dir, Options{MaxBytes: 1 << 20})
		ents, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 1 {
			t.Fatalf("Apply wrote outside the layer directory: %v", ents)
		}
	})
}
