// Package layer unpacks OCI image layers into per-layer directories that
// overlayfs stacks as lower layers, and keeps them in a content-addressed
// cache so that every layer is unpacked once.
//
// Whiteouts become what overlayfs understands: `.wh.NAME` a 0:0 character
// device called NAME, and `.wh..wh..opq` the opaque xattr on its directory
// (user.overlay.opaque for mounts with userxattr, as in a user namespace).
// Every path is resolved inside the layer directory with openat2
// RESOLVE_IN_ROOT, so a hostile tar cannot write outside it.
package layer

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// Options control how a layer is written.
type Options struct {
	// OpaqueXattr is the xattr that marks an opaque directory:
	// "user.overlay.opaque" (the default) for overlay mounts with userxattr,
	// "trusted.overlay.opaque" for mounts without it.
	OpaqueXattr string
	// Owner maps a tar entry's owner to the one to create the file with;
	// it returns ok=false when the id cannot be represented (unmapped in
	// this user namespace), and the entry is then owned by 0:0. Nil keeps
	// ids as they are.
	Owner func(uid, gid int) (int, int, bool)
	// Lowers are the directories of the layers below, nearest first. A
	// hard link to a file of a lower layer is copied from there.
	Lowers []string
	// MaxBytes caps the bytes of file content written; 0 means 64 GiB.
	MaxBytes int64
	// Log receives warnings about entries that are skipped; nil discards.
	Log *slog.Logger
}

// Apply reads a tar stream (one uncompressed layer) and writes it into dir,
// an empty directory, in the overlay lower-layer form.
func Apply(r io.Reader, dir string, opts Options) error {
	if opts.OpaqueXattr == "" {
		opts.OpaqueXattr = "user.overlay.opaque"
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = 64 << 30
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	rootFD, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open layer dir %s: %w", dir, err)
	}
	defer unix.Close(rootFD)
	a := &applier{root: rootFD, dir: dir, opts: opts, created: map[string]bool{}, dirMeta: map[string]*tar.Header{}}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if err := a.entry(hdr, tr); err != nil {
			return err
		}
	}
	return a.finishDirs()
}

type applier struct {
	root int
	dir  string
	opts Options
	// created records the paths this layer wrote, so that a whiteout later
	// in the same layer does not remove them (whiteouts only hide lower
	// layers).
	created map[string]bool
	// dirMeta holds directory headers whose mode and times are applied
	// after all children are written.
	dirMeta map[string]*tar.Header
	written int64
	warned  map[string]bool
}

func (a *applier) warnOnce(key, msg string, args ...any) {
	if a.warned == nil {
		a.warned = map[string]bool{}
	}
	if a.warned[key] {
		return
	}
	a.warned[key] = true
	a.opts.Log.Warn(msg, args...)
}

// CleanName turns a tar entry name into a clean relative path ("" is the
// root itself). It fails for names that leave the root.
func CleanName(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("tar entry %q: NUL in name", name)
	}
	n := strings.TrimPrefix(path.Clean("/"+name), "/")
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("tar entry %q: leaves the layer root", name)
		}
	}
	return n, nil
}

func (a *applier) entry(hdr *tar.Header, content io.Reader) error {
	name, err := CleanName(hdr.Name)
	if err != nil {
		return err
	}
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	switch {
	case name == "":
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("tar entry %q: the layer root can only be a directory", hdr.Name)
		}
		a.dirMeta[""] = hdr
		return nil
	case base == whiteoutOpaque:
		return a.opaque(dir)
	case strings.HasPrefix(base, whiteoutMeta):
		return nil // aufs metadata such as .wh..wh.plnk
	case strings.HasPrefix(base, whiteoutPrefix):
		target := base[len(whiteoutPrefix):]
		if target == "" || target == "." || target == ".." {
			return fmt.Errorf("tar entry %q: invalid whiteout", hdr.Name)
		}
		return a.whiteout(dir, target)
	}
	parentFD, err := a.mkdirAll(dir)
	if err != nil {
		return fmt.Errorf("tar entry %q: parent: %w", hdr.Name, err)
	}
	defer unix.Close(parentFD)

	// Replace whatever exists unless both are directories.
	var st unix.Stat_t
	if err := unix.Fstatat(parentFD, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		if hdr.Typeflag == tar.TypeDir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			a.created[name] = true
			a.dirMeta[name] = hdr
			return a.meta(parentFD, base, hdr, true)
		}
		if err := removeAt(parentFD, base); err != nil {
			return fmt.Errorf("tar entry %q: replace existing: %w", hdr.Name, err)
		}
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(parentFD, base, 0o700); err != nil {
			return fmt.Errorf("tar entry %q: mkdir: %w", hdr.Name, err)
		}
		a.dirMeta[name] = hdr
	case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // TypeRegA appears in old tars
		if err := a.writeFile(parentFD, base, hdr, content); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, parentFD, base); err != nil {
			return fmt.Errorf("tar entry %q: symlink: %w", hdr.Name, err)
		}
	case tar.TypeLink:
		if err := a.hardlink(parentFD, base, hdr); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
	case tar.TypeFifo:
		if err := unix.Mknodat(parentFD, base, unix.S_IFIFO|0o600, 0); err != nil {
			return fmt.Errorf("tar entry %q: mkfifo: %w", hdr.Name, err)
		}
	case tar.TypeChar, tar.TypeBlock:
		// mknod of real devices is not allowed in a user namespace, and
		// the runtime provides /dev itself.
		a.warnOnce("dev", "skipping device nodes in image layer", "first", hdr.Name)
		return nil
	default:
		a.warnOnce(fmt.Sprintf("type%c", hdr.Typeflag), "skipping tar entry of unsupported type", "name", hdr.Name, "type", string(hdr.Typeflag))
		return nil
	}
	a.created[name] = true
	return a.meta(parentFD, base, hdr, hdr.Typeflag == tar.TypeDir)
}

// resolve opens p (relative, clean) inside the layer root, following
// symlinks only within it.
func (a *applier) resolve(p string, flags uint64) (int, error) {
	if p == "" {
		p = "."
	}
	return unix.Openat2(a.root, p, &unix.OpenHow{
		Flags:   flags | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
}

// mkdirAll returns an O_PATH fd of directory p inside the root, creating the
// missing components (mode 0755, owned by the creator, as tar does for
// directories it has no header for).
func (a *applier) mkdirAll(p string) (int, error) {
	fd, err := a.resolve(p, unix.O_PATH|unix.O_DIRECTORY)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	parent, base := path.Split(p)
	pfd, err := a.mkdirAll(strings.TrimSuffix(parent, "/"))
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	if err := unix.Mkdirat(pfd, base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("mkdir %s: %w", p, err)
	}
	return a.resolve(p, unix.O_PATH|unix.O_DIRECTORY)
}

func (a *applier) writeFile(parentFD int, base string, hdr *tar.Header, content io.Reader) error {
	if a.written+hdr.Size > a.opts.MaxBytes {
		return fmt.Errorf("layer content exceeds %d bytes", a.opts.MaxBytes)
	}
	fd, err := unix.Openat(parentFD, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	f := os.NewFile(uintptr(fd), base)
	n, err := io.CopyN(f, content, hdr.Size)
	a.written += n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %d of %d bytes: %w", n, hdr.Size, err)
	}
	return nil
}

func (a *applier) hardlink(parentFD int, base string, hdr *tar.Header) error {
	target, err := CleanName(hdr.Linkname)
	if err != nil || target == "" {
		return fmt.Errorf("hard link target %q is invalid", hdr.Linkname)
	}
	if a.created[target] {
		tdir, tbase := path.Split(target)
		tfd, err := a.resolve(strings.TrimSuffix(tdir, "/"), unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
		}
		defer unix.Close(tfd)
		if err := unix.Linkat(tfd, tbase, parentFD, base, 0); err != nil {
			return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
		}
		return nil
	}
	// The target lives in a lower layer: overlay cannot link across
	// layers, so this layer gets a copy.
	for _, low := range a.opts.Lowers {
		src, err := openInRoot(low, target)
		if err != nil {
			continue
		}
		defer src.Close()
		st, err := src.Stat()
		if err != nil || !st.Mode().IsRegular() {
			return fmt.Errorf("hard link target %q in a lower layer is not a regular file", hdr.Linkname)
		}
		fd, err := unix.Openat(parentFD, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("copy hard link target: %w", err)
		}
		dst := os.NewFile(uintptr(fd), base)
		_, err = io.Copy(dst, src)
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("copy hard link target %q: %w", hdr.Linkname, err)
		}
		// The header of a link carries its own metadata; meta applies it.
		return nil
	}
	return fmt.Errorf("hard link target %q not found in this or a lower layer", hdr.Linkname)
}

func openInRoot(root, p string) (*os.File, error) {
	rfd, err := unix.Open(root, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(rfd)
	fd, err := unix.Openat2(rfd, p, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), p), nil
}

func (a *applier) whiteout(dir, target string) error {
	name := path.Join(dir, target)
	if a.created[name] {
		return nil // hides lower layers only, not this layer's own entry
	}
	parentFD, err := a.mkdirAll(dir)
	if err != nil {
		return fmt.Errorf("whiteout %q: parent: %w", name, err)
	}
	defer unix.Close(parentFD)
	if err := removeAt(parentFD, target); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("whiteout %q: %w", name, err)
	}
	// A 0:0 character device is overlayfs's whiteout; creating one is
	// allowed without privilege.
	if err := unix.Mknodat(parentFD, target, unix.S_IFCHR|0o000, 0); err != nil {
		return fmt.Errorf("whiteout %q: mknod: %w", name, err)
	}
	return nil
}

func (a *applier) opaque(dir string) error {
	fd, err := a.mkdirAll(dir)
	if err != nil {
		return fmt.Errorf("opaque whiteout in %q: %w", dir, err)
	}
	unix.Close(fd)
	dfd, err := a.resolve(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("opaque whiteout in %q: %w", dir, err)
	}
	defer unix.Close(dfd)
	if err := unix.Fsetxattr(dfd, a.opts.OpaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("opaque whiteout in %q: set %s: %w", dir, a.opts.OpaqueXattr, err)
	}
	return nil
}

// meta applies owner, mode, xattrs and (except for directories, which get
// theirs at the end) times.
func (a *applier) meta(parentFD int, base string, hdr *tar.Header, isDir bool) error {
	uid, gid := hdr.Uid, hdr.Gid
	if a.opts.Owner != nil {
		var ok bool
		if uid, gid, ok = a.opts.Owner(uid, gid); !ok {
			a.warnOnce("owner", "layer has files owned by ids this user namespace does not map; they are owned by root (use --userns=subuid to keep them)", "first", hdr.Name, "uid", hdr.Uid, "gid", hdr.Gid)
			uid, gid = 0, 0
		}
	}
	if err := unix.Fchownat(parentFD, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("tar entry %q: chown %d:%d: %w", hdr.Name, uid, gid, err)
	}
	if hdr.Typeflag == tar.TypeSymlink {
		return a.times(parentFD, base, hdr)
	}
	// chmod after chown: chown clears the setuid bits.
	mode := uint32(hdr.Mode & 0o7777)
	if err := unix.Fchmodat(parentFD, base, mode, 0); err != nil {
		return fmt.Errorf("tar entry %q: chmod: %w", hdr.Name, err)
	}
	if err := a.xattrs(parentFD, base, hdr); err != nil {
		return err
	}
	if isDir {
		return nil
	}
	return a.times(parentFD, base, hdr)
}

func (a *applier) xattrs(parentFD int, base string, hdr *tar.Header) error {
	var keys []string
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 || (hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeDir) {
		return nil
	}
	sort.Strings(keys)
	fd, err := unix.Openat(parentFD, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("tar entry %q: open for xattrs: %w", hdr.Name, err)
	}
	defer unix.Close(fd)
	for _, k := range keys {
		name := strings.TrimPrefix(k, "SCHILY.xattr.")
		switch {
		case name == "security.selinux", strings.HasPrefix(name, "trusted."):
			continue
		case strings.HasPrefix(name, "user.overlay."):
			// Escape overlay's own namespace so image content cannot
			// forge whiteouts or redirects (umoci does the same).
			name = "user.overlay.overlay." + strings.TrimPrefix(name, "user.overlay.")
		}
		if err := unix.Fsetxattr(fd, name, []byte(hdr.PAXRecords[k]), 0); err != nil {
			a.warnOnce("xattr:"+name, "cannot set xattr from image layer; skipped", "name", hdr.Name, "xattr", name, "err", err)
		}
	}
	return nil
}

func (a *applier) times(parentFD int, base string, hdr *tar.Header) error {
	mtime := hdr.ModTime
	if mtime.IsZero() {
		mtime = time.Now()
	}
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = mtime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(parentFD, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("tar entry %q: set times: %w", hdr.Name, err)
	}
	return nil
}

// finishDirs applies directory metadata deepest first, after every child
// was written (writing a child changes its parent's mtime).
func (a *applier) finishDirs() error {
	names := make([]string, 0, len(a.dirMeta))
	for n := range a.dirMeta {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		return strings.Count(names[i], "/") > strings.Count(names[j], "/") || (strings.Count(names[i], "/") == strings.Count(names[j], "/") && names[i] > names[j])
	})
	for _, n := range names {
		hdr := a.dirMeta[n]
		dir, base := path.Split(n)
		if n == "" {
			dir, base = "", "."
		}
		pfd, err := a.resolve(strings.TrimSuffix(dir, "/"), unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("directory %q: %w", n, err)
		}
		if n == "" {
			err = unix.Fchmodat(pfd, base, uint32(hdr.Mode&0o7777), 0)
		}
		if err == nil {
			err = a.times(pfd, base, hdr)
		}
		unix.Close(pfd)
		if err != nil {
			return err
		}
	}
	return nil
}

// removeAt removes name in directory parentFD, recursively for
// directories, without following symlinks.
func removeAt(parentFD int, name string) error {
	err := unix.Unlinkat(parentFD, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return err
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	_ = unix.Fchmodat(parentFD, name, 0o700, 0)
	fd, oerr := unix.Openat(parentFD, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if oerr != nil {
		return err
	}
	dir := os.NewFile(uintptr(fd), name)
	entries, rerr := dir.ReadDir(-1)
	if rerr != nil {
		dir.Close()
		return rerr
	}
	for _, e := range entries {
		if err := removeAt(fd, e.Name()); err != nil && !errors.Is(err, unix.ENOENT) {
			dir.Close()
			return err
		}
	}
	dir.Close()
	return unix.Unlinkat(parentFD, name, unix.AT_REMOVEDIR)
}

// RemoveAll removes dir, also when parts of it are read-only or mode 000
// (overlay's work/work is).
func RemoveAll(dir string) error {
	parent, base := filepath.Split(filepath.Clean(dir))
	if parent == "" {
		parent = "."
	}
	pfd, err := unix.Open(parent, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	defer unix.Close(pfd)
	if err := removeAt(pfd, base); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}
