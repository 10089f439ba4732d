// Package rootfs builds a container's root filesystem from inside the
// container's user and mount namespaces, then pivots into it.
//
// It runs in the launcher's init process before the user's command, in this
// order: make every mount private; mount a scratch tmpfs (overlay upper and
// work dirs, generated /etc files); mount the root (overlay of image layers,
// a bind of a directory, or a read-only bind of the host's /); mount a fresh
// /proc, a minimal /dev, a read-only /sys, the volumes and the generated
// files; pivot_root; remount read-only when asked.
//
// Every mount target inside the new root is resolved with openat2
// RESOLVE_IN_ROOT and mounted through its file descriptor, so a symlink in
// an image (say /etc/resolv.conf -> /host/path) cannot redirect a mount
// outside the container.
package rootfs

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/runtime/spec"
)

// Kind says where the root filesystem comes from.
type Kind string

const (
	// Host is the host's own / mounted read-only.
	Host Kind = "host"
	// Dir is a directory on the host (--rootfs).
	Dir Kind = "dir"
	// Layers is an overlay of unpacked image layers (--image).
	Layers Kind = "layers"
)

// Config describes the root filesystem to build.
type Config struct {
	Kind Kind
	// Dir is the root directory for Kind Dir.
	Dir string
	// Lowers are the unpacked layer directories, top first, for Kind Layers.
	Lowers []string
	// Mountpoint is an empty host directory that becomes the new root.
	Mountpoint string
	// Scratch is an empty host directory that gets a tmpfs for the overlay
	// upper and work directories and the generated files. It only exists in
	// the container's mount namespace, so it disappears with it.
	Scratch  string
	ReadOnly bool
	Volumes  []spec.Volume
	// Files are generated files (e.g. /etc/hosts) bound into the container.
	Files map[string][]byte
	// DevptsGID5 mounts devpts with gid=5 (tty), which needs gid 5 mapped.
	DevptsGID5 bool
	Log        *slog.Logger
}

// Setup builds the root filesystem and pivots into it; afterwards the
// process's / is the container's root and its working directory is /.
func Setup(c Config) error {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return stageErr("make mounts private", err)
	}
	// For Host and Dir the root is bound first so that the scratch tmpfs
	// does not show up inside the bind of /.
	if c.Kind != Layers {
		if err := mountRoot(c); err != nil {
			return err
		}
	}
	if err := unix.Mount("tmpfs", c.Scratch, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return stageErr("mount scratch tmpfs", err)
	}
	if c.Kind == Layers {
		if err := mountRoot(c); err != nil {
			return err
		}
	}
	rootFD, err := unix.Open(c.Mountpoint, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return stageErr("open new root", err)
	}
	defer unix.Close(rootFD)
	r := &root{fd: rootFD, log: c.Log, hostRO: c.Kind == Host}
	steps := []struct {
		name string
		fn   func() error
	}{
		{"mount /proc", r.proc},
		{"mount /dev", func() error { return r.dev(c.DevptsGID5) }},
		{"mount /sys", r.sys},
		{"mount volumes", func() error { return r.volumes(c.Volumes) }},
		{"write generated files", func() error { return r.files(c.Scratch, c.Files) }},
	}
	if c.ReadOnly || c.Kind == Host {
		steps = append(steps, struct {
			name string
			fn   func() error
		}{"mount tmpfs on /tmp, /run, /var/tmp", r.tmpDirs})
	}
	for _, s := range steps {
		if err := s.fn(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	if err := pivot(c.Mountpoint); err != nil {
		return err
	}
	if c.ReadOnly && c.Kind != Host {
		if err := unix.MountSetattr(unix.AT_FDCWD, "/", 0, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return stageErr("remount / read-only", err)
		}
	}
	return nil
}

// StageError is a setup failure with the step it happened in.
type StageError struct {
	Stage string
	Err   error
}

func (e *StageError) Error() string { return e.Stage + ": " + e.Err.Error() }
func (e *StageError) Unwrap() error { return e.Err }

func stageErr(stage string, err error) error { return &StageError{Stage: stage, Err: err} }

func mountRoot(c Config) error {
	switch c.Kind {
	case Host:
		// Recursive, because the host's submounts are locked to it, and
		// read-only all the way down.
		return bindTree("/", unix.AT_FDCWD, c.Mountpoint, true)
	case Dir:
		return bindTree(c.Dir, unix.AT_FDCWD, c.Mountpoint, false)
	case Layers:
		upper := filepath.Join(c.Scratch, "upper")
		work := filepath.Join(c.Scratch, "work")
		for _, d := range []string{upper, work} {
			if err := os.Mkdir(d, 0o755); err != nil {
				return stageErr("overlay dirs", err)
			}
		}
		if len(c.Lowers) == 0 {
			return stageErr("mount overlay", errors.New("image has no layers"))
		}
		for _, l := range c.Lowers {
			if strings.ContainsAny(l, ",:") {
				return stageErr("mount overlay", fmt.Errorf("layer path %q contains ',' or ':'; move the layer cache (--root) to a plainer path", l))
			}
		}
		opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,userxattr", strings.Join(c.Lowers, ":"), upper, work)
		if err := unix.Mount("overlay", c.Mountpoint, "overlay", 0, opts); err != nil {
			hint := ""
			if errors.Is(err, unix.EINVAL) {
				hint = " (overlayfs in a user namespace needs Linux 5.11 or later)"
			}
			return stageErr("mount overlay", fmt.Errorf("%w%s", err, hint))
		}
		return nil
	}
	return stageErr("mount root", fmt.Errorf("unknown root kind %q", c.Kind))
}

// bindTree clones the mount tree at src (recursively: host trees carry
// locked submounts) and attaches it at target, relative to dirfd.
func bindTree(src string, dirfd int, target string, readOnly bool) error {
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return stageErr("bind "+src, err)
	}
	defer unix.Close(tree)
	if readOnly {
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return stageErr("make "+src+" read-only", err)
		}
	}
	flags := unix.MOVE_MOUNT_F_EMPTY_PATH
	if target == "" {
		flags |= unix.MOVE_MOUNT_T_EMPTY_PATH
	}
	if err := unix.MoveMount(tree, "", dirfd, target, flags); err != nil {
		return stageErr("attach "+src, err)
	}
	return nil
}

// root resolves and creates paths inside the new root.
type root struct {
	fd     int
	log    *slog.Logger
	hostRO bool
}

func (r *root) open(p string, flags uint64) (int, error) {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" {
		p = "."
	}
	return unix.Openat2(r.fd, p, &unix.OpenHow{
		Flags:   flags | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
}

// target returns an O_PATH fd for p inside the root, creating it (and its
// parents) as a directory or an empty file when missing. A dangling
// symlink on the way (an image's /etc/resolv.conf -> ../run/...) is
// followed inside the root and its target created, as podman does.
func (r *root) target(p string, dir bool) (int, error) { return r.targetDepth(p, dir, 0) }

func (r *root) targetDepth(p string, dir bool, depth int) (int, error) {
	if depth > 40 {
		return -1, fmt.Errorf("resolve %s: %w", p, unix.ELOOP)
	}
	fd, err := r.open(p, unix.O_PATH)
	if err == nil {
		return fd, nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return -1, fmt.Errorf("resolve %s: %w", p, err)
	}
	parent, base := path.Split(path.Clean("/" + p))
	pfd, err := r.targetDepth(parent, true, depth+1)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	if dir {
		err = unix.Mkdirat(pfd, base, 0o755)
	} else {
		var f int
		f, err = unix.Openat(pfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(f)
		}
	}
	if errors.Is(err, unix.EEXIST) {
		if link, lerr := readlinkat(pfd, base); lerr == nil {
			next := link
			if !path.IsAbs(link) {
				next = path.Join(parent, link)
			}
			return r.targetDepth(next, dir, depth+1)
		}
	} else if err != nil {
		return -1, fmt.Errorf("create mount point %s: %w", p, err)
	}
	return r.open(p, unix.O_PATH)
}

func readlinkat(dirfd int, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func fdPath(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }

// mountFS mounts a new filesystem at p inside the root.
func (r *root) mountFS(p, fstype, source string, flags uintptr, data string) error {
	fd, err := r.target(p, true)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Mount(source, fdPath(fd), fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", fstype, p, err)
	}
	return nil
}

// bind binds host path src at p inside the root.
func (r *root) bind(src, p string, readOnly bool) error {
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("bind source: %w", err)
	}
	fd, err := r.target(p, st.IsDir())
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := bindTree(src, fd, "", readOnly); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, p, err)
	}
	return nil
}

func (r *root) proc() error {
	err := r.mountFS("/proc", "proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if err == nil {
		return r.maskProc()
	}
	if !errors.Is(err, unix.EPERM) {
		return err
	}
	// The host's /proc is partly covered (e.g. inside another container),
	// so the kernel refuses a fresh one; bind the host's instead, as
	// bubblewrap does without a pid namespace.
	r.log.Warn("cannot mount a fresh /proc; binding the host's", "err", err)
	return r.bind("/proc", "/proc", false)
}

// maskProc hides the /proc files containers should not touch, as runc's
// defaults do. Missing files are fine.
func (r *root) maskProc() error {
	for _, p := range []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"} {
		fd, err := r.open(p, unix.O_PATH)
		if err != nil {
			continue
		}
		err = bindTree(fdPath(fd), fd, "", true)
		unix.Close(fd)
		if err != nil {
			r.log.Debug("cannot make proc path read-only", "path", p, "err", err)
		}
	}
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"} {
		fd, err := r.open(p, unix.O_PATH|unix.O_NOFOLLOW)
		if err != nil {
			continue
		}
		err = bindTree("/dev/null", fd, "", true)
		unix.Close(fd)
		if err != nil {
			r.log.Debug("cannot mask proc path", "path", p, "err", err)
		}
	}
	return nil
}

func (r *root) dev(gid5 bool) error {
	if err := r.mountFS("/dev", "tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return err
	}
	dev, err := r.open("/dev", unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(dev)
	// mknod of real devices is refused in a user namespace: bind the
	// host's nodes over empty files, as runc and bubblewrap do.
	for _, n := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		fd, err := unix.Openat(dev, n, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o666)
		if err != nil {
			return fmt.Errorf("create /dev/%s: %w", n, err)
		}
		unix.Close(fd)
		if err := bindTree("/dev/"+n, dev, n, false); err != nil {
			return err
		}
	}
	links := map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
		"stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx", "core": "/proc/kcore",
	}
	for name, target := range links {
		if err := unix.Symlinkat(target, dev, name); err != nil {
			return fmt.Errorf("symlink /dev/%s: %w", name, err)
		}
	}
	for _, d := range []string{"pts", "shm", "mqueue"} {
		if err := unix.Mkdirat(dev, d, 0o755); err != nil {
			return fmt.Errorf("mkdir /dev/%s: %w", d, err)
		}
	}
	pts := "newinstance,ptmxmode=0666,mode=0620"
	if gid5 {
		pts += ",gid=5"
	}
	if err := r.mountFS("/dev/pts", "devpts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, pts); err != nil {
		if !gid5 || !errors.Is(err, unix.EINVAL) {
			return err
		}
		if err := r.mountFS("/dev/pts", "devpts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
			return err
		}
	}
	if err := r.mountFS("/dev/shm", "tmpfs", "shm", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
		return err
	}
	// mqueue needs the ipc namespace to be ours; it is, but do not fail
	// the container over it.
	if err := r.mountFS("/dev/mqueue", "mqueue", "mqueue", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		r.log.Debug("no /dev/mqueue", "err", err)
	}
	return nil
}

func (r *root) sys() error {
	err := r.mountFS("/sys", "sysfs", "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if err == nil || !errors.Is(err, unix.EPERM) {
		return err
	}
	// sysfs needs a network namespace of our own; without one, bind the
	// host's read-only (crun and runc's rootless mode do the same).
	r.log.Warn("cannot mount sysfs; binding the host's /sys read-only", "err", err)
	return r.bind("/sys", "/sys", true)
}

func (r *root) volumes(vols []spec.Volume) error {
	for _, v := range vols {
		if err := r.bind(v.Source, v.Target, v.ReadOnly); err != nil {
			return fmt.Errorf("volume %s:%s: %w", v.Source, v.Target, err)
		}
	}
	return nil
}

func (r *root) files(scratch string, files map[string][]byte) error {
	dir := filepath.Join(scratch, "etc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		src := filepath.Join(dir, fmt.Sprintf("%d-%s", i, path.Base(n)))
		if err := os.WriteFile(src, files[n], 0o644); err != nil {
			return err
		}
		if err := r.bind(src, n, false); err != nil {
			if r.hostRO {
				// The host's / is read-only, so a missing file cannot be
				// created to mount on.
				r.log.Warn("cannot provide generated file in the host root", "file", n, "err", err)
				continue
			}
			return err
		}
	}
	return nil
}

func (r *root) tmpDirs() error {
	for _, d := range []string{"/tmp", "/var/tmp", "/run"} {
		if err := r.mountFS(d, "tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
			if r.hostRO && errors.Is(err, unix.EROFS) {
				continue
			}
			return err
		}
	}
	return nil
}

// pivot makes newRoot the process's root, the runc way: pivot_root(".",
// ".") stacks the old root on top of the new one, and unmounting "."
// detaches it.
func pivot(newRoot string) error {
	oldRoot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return stageErr("pivot_root", err)
	}
	defer unix.Close(oldRoot)
	if err := unix.Chdir(newRoot); err != nil {
		return stageErr("pivot_root", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return stageErr("pivot_root", err)
	}
	if err := unix.Fchdir(oldRoot); err != nil {
		return stageErr("pivot_root", err)
	}
	// Slave first, so that the unmount does not travel to the host.
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return stageErr("pivot_root: make old root slave", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return stageErr("pivot_root: detach old root", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return stageErr("pivot_root", err)
	}
	return nil
}
