package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Limits of the plan, the same as SANDBOX_PLAN_MAX and SANDBOX_PLAN_BYTES
// in sandbox.h.
const (
	maxPlanEntries = 64
	maxPlanBytes   = 65536
	// maxSymlinks is how many links one path may go through, as the
	// kernel's limit (ELOOP).
	maxSymlinks = 40
)

// DefaultKeep are the files every sandbox keeps visible besides /etc and
// /run: the resolver configuration, which is often a symbolic link that
// leaves /etc (systemd-resolved's static mode links it to
// /usr/lib/systemd/resolv.conf, WSL to /mnt/wsl/resolv.conf). The time
// zone (/etc/localtime, a link into /usr/share/zoneinfo) is not kept, as
// slirp4netns does not: Go then logs in UTC. Add it to State.Keep to keep
// local time.
var DefaultKeep = []string{"/etc/resolv.conf"}

// entryKind is what a plan step makes in the new root.
type entryKind byte

const (
	kindDir     entryKind = 'd'
	kindSymlink entryKind = 'l'
	kindFile    entryKind = 'f'
)

// planEntry is one step of the plan. Path is absolute, inside the new root.
type planEntry struct {
	Kind   entryKind
	Path   string
	Target string // kindSymlink: the link's target, as on the host
}

// plan is what the constructor does, before binding /etc and /run, so that
// each kept path resolves inside the new root to the file it resolves to
// on the host: the directories and symbolic links on the way are made
// again, and the file itself is bound read-only. A file replaced by rename
// on the host is not followed (a directory bind would be); files under
// /etc and /run, which are bound whole, are.
type plan struct {
	entries []planEntry
	seen    map[string]entryKind
}

// boundWhole reports whether p lies in /etc or /run, which the new root
// binds whole.
func boundWhole(p string) bool {
	for _, d := range []string{"/etc", "/run"} {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// planKeep makes the plan for paths (absolute). A path that does not exist
// is left out: the daemon reports it when it reads the file.
func planKeep(paths []string) (*plan, error) {
	p := &plan{seen: map[string]entryKind{}}
	for _, k := range paths {
		if err := p.keep(k); err != nil {
			return nil, err
		}
	}
	if len(p.entries) > maxPlanEntries {
		return nil, fmt.Errorf("keep %s in the sandbox: %d steps needed, at most %d possible", strings.Join(paths, ", "), len(p.entries), maxPlanEntries)
	}
	return p, nil
}

// keep resolves one path component by component, as the kernel would, and
// adds what the new root needs for it. It adds nothing when the path does
// not resolve to an existing file.
func (p *plan) keep(name string) error {
	if !path.IsAbs(name) {
		return fmt.Errorf("keep %q in the sandbox: not an absolute path", name)
	}
	var (
		added  []planEntry
		rest   = strings.Split(name, "/")
		cur    = "/"
		links  = 0
		commit = func() error {
			for _, e := range added {
				if k, ok := p.seen[e.Path]; ok {
					if k != e.Kind {
						return fmt.Errorf("keep %s in the sandbox: %s changed while it was looked at", name, e.Path)
					}
					continue
				}
				p.seen[e.Path] = e.Kind
				p.entries = append(p.entries, e)
			}
			return nil
		}
	)
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			// cur holds no symbolic link, so its parent is lexical.
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		fi, err := os.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("keep %s in the sandbox: %w", name, err)
		}
		inside := boundWhole(next)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			links++
			if links > maxSymlinks {
				return fmt.Errorf("keep %s in the sandbox: %w", name, unix.ELOOP)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return fmt.Errorf("keep %s in the sandbox: %w", name, err)
			}
			if !inside {
				added = append(added, planEntry{Kind: kindSymlink, Path: next, Target: target})
			}
			if path.IsAbs(target) {
				cur = "/"
			}
			rest = append(strings.Split(target, "/"), rest...)
		case fi.IsDir():
			if !inside {
				added = append(added, planEntry{Kind: kindDir, Path: next})
			}
			cur = next
		default:
			if len(rest) > 0 && strings.Join(rest, "") != "" {
				return nil // a file used as a directory: ENOTDIR
			}
			if !inside {
				added = append(added, planEntry{Kind: kindFile, Path: next})
			}
			return commit()
		}
	}
	if cur == "/" || boundWhole(cur) {
		return nil
	}
	return fmt.Errorf("keep %s in the sandbox: %s is a directory; only files can be kept", name, cur)
}

// encode writes the plan in the constructor's format (see sandbox.h and
// sandbox_plan_parse): lines "d PATH", "l PATH TARGET", "f PATH", with
// every field percent-encoded.
func (p *plan) encode() (string, error) {
	lines := make([]string, 0, len(p.entries))
	for _, e := range p.entries {
		var l string
		switch e.Kind {
		case kindDir:
			l = "d " + escapeField(e.Path)
		case kindSymlink:
			l = "l " + escapeField(e.Path) + " " + escapeField(e.Target)
		case kindFile:
			l = "f " + escapeField(e.Path)
		default:
			return "", fmt.Errorf("sandbox plan: unknown step %q", e.Kind)
		}
		lines = append(lines, l)
	}
	s := strings.Join(lines, "\n")
	if len(s) > maxPlanBytes {
		return "", fmt.Errorf("sandbox plan: %d bytes, at most %d possible", len(s), maxPlanBytes)
	}
	return s, nil
}

// escapeField percent-encodes the bytes that would end a field or a line,
// and '%' itself. A NUL byte cannot be encoded (no path holds one).
func escapeField(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == '%' || c == 0x7f {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
