// Package idmap decides how a rootless container's user namespace maps ids:
// either the caller alone as root (single), or the caller as root plus the
// subordinate ranges /etc/subuid and /etc/subgid give it (subuid), written
// through the setuid helpers newuidmap and newgidmap.
package idmap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// Mode selects the id mapping.
type Mode string

const (
	// Single maps only the caller, as root; no helper is needed.
	Single Mode = "single"
	// Subuid maps the caller as root and its subordinate ranges from 1 on.
	Subuid Mode = "subuid"
)

// ParseMode parses a --userns value.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case Single, "", "auto":
		return Single, nil
	case Subuid:
		return Subuid, nil
	}
	return "", fmt.Errorf("--userns=%s: use single or subuid", s)
}

// Range is one contiguous block of subordinate ids.
type Range struct {
	Start uint32
	Count uint32
}

// ParseSubIDs reads an /etc/subuid-style file and returns, in file order, the
// ranges that belong to the user given by name or by its number.
func ParseSubIDs(r io.Reader, name string, id uint32) ([]Range, error) {
	var out []Range
	sc := bufio.NewScanner(r)
	idStr := strconv.FormatUint(uint64(id), 10)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 || (f[0] != name && f[0] != idStr) {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 || start+count > 1<<32 {
			continue
		}
		out = append(out, Range{Start: uint32(start), Count: uint32(count)})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// Entry is one line of a uid_map or gid_map: Size ids from Inside on map to
// host ids from Outside on.
type Entry struct {
	Inside  uint32 `json:"inside"`
	Outside uint32 `json:"outside"`
	Size    uint32 `json:"size"`
}

// Plan is the full mapping for a container.
type Plan struct {
	Mode Mode    `json:"mode"`
	UIDs []Entry `json:"uids"`
	GIDs []Entry `json:"gids"`
}

// Key names the mapping, for caches whose content depends on it (unpacked
// layers are owned by mapped ids).
func (p Plan) Key() string {
	if p.Mode == Single {
		return "single"
	}
	var b strings.Builder
	b.WriteString("subuid")
	for _, e := range p.UIDs {
		fmt.Fprintf(&b, "-u%d.%d.%d", e.Inside, e.Outside, e.Size)
	}
	for _, e := range p.GIDs {
		fmt.Fprintf(&b, "-g%d.%d.%d", e.Inside, e.Outside, e.Size)
	}
	return b.String()
}

// Mapped reports whether id inside the namespace is mapped by entries.
func Mapped(entries []Entry, id uint32) bool {
	for _, e := range entries {
		if id >= e.Inside && uint64(id) < uint64(e.Inside)+uint64(e.Size) {
			return true
		}
	}
	return false
}

// Files names the subordinate-id files and helper programs; tests replace
// them, the zero value means the system ones.
type Files struct {
	SubUID, SubGID       string
	NewUIDMap, NewGIDMap string
}

func (f Files) withDefaults() Files {
	if f.SubUID == "" {
		f.SubUID = "/etc/subuid"
	}
	if f.SubGID == "" {
		f.SubGID = "/etc/subgid"
	}
	if f.NewUIDMap == "" {
		f.NewUIDMap = "newuidmap"
	}
	if f.NewGIDMap == "" {
		f.NewGIDMap = "newgidmap"
	}
	return f
}

// NewPlan builds the mapping for the calling user (uid, gid, user name) in
// the given mode. In subuid mode it checks that the user has ranges and
// that newuidmap and newgidmap exist, and says what is missing otherwise.
func NewPlan(mode Mode, uid, gid uint32, name string, files Files) (Plan, error) {
	if mode == Single {
		return Plan{
			Mode: Single,
			UIDs: []Entry{{Inside: 0, Outside: uid, Size: 1}},
			GIDs: []Entry{{Inside: 0, Outside: gid, Size: 1}},
		}, nil
	}
	files = files.withDefaults()
	p := Plan{Mode: Subuid}
	var err error
	if p.UIDs, err = subEntries(files.SubUID, name, uid); err != nil {
		return Plan{}, err
	}
	if p.GIDs, err = subEntries(files.SubGID, name, gid); err != nil {
		return Plan{}, err
	}
	for _, h := range []string{files.NewUIDMap, files.NewGIDMap} {
		if _, err := exec.LookPath(h); err != nil {
			return Plan{}, fmt.Errorf("--userns=subuid needs %s (install the uidmap package): %w", h, err)
		}
	}
	return p, nil
}

func subEntries(file, name string, id uint32) ([]Entry, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("--userns=subuid: read %s: %w (add a line %q, e.g. with usermod --add-subuids)", file, err, name+":100000:65536")
	}
	defer f.Close()
	ranges, err := ParseSubIDs(f, name, id)
	if err != nil {
		return nil, fmt.Errorf("--userns=subuid: read %s: %w", file, err)
	}
	if len(ranges) == 0 {
		return nil, fmt.Errorf("--userns=subuid: no entry for user %q (uid %d) in %s; add one such as %q (usermod --add-subuids 100000-165535 %s)", name, id, file, name+":100000:65536", name)
	}
	entries := []Entry{{Inside: 0, Outside: id, Size: 1}}
	next := uint32(1)
	for _, r := range ranges {
		entries = append(entries, Entry{Inside: next, Outside: r.Start, Size: r.Count})
		next += r.Count
	}
	return entries, nil
}

// Apply writes the plan into the user namespace of process pid with
// newuidmap and newgidmap. It is only needed in subuid mode: in single mode
// the maps go in SysProcAttr.UidMappings.
func (p Plan) Apply(pid int, files Files) error {
	files = files.withDefaults()
	run := func(helper string, entries []Entry) error {
		args := []string{strconv.Itoa(pid)}
		for _, e := range entries {
			args = append(args, strconv.FormatUint(uint64(e.Inside), 10), strconv.FormatUint(uint64(e.Outside), 10), strconv.FormatUint(uint64(e.Size), 10))
		}
		var stderr bytes.Buffer
		cmd := exec.Command(helper, args...)
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(stderr.String())
			hint := ""
			if strings.Contains(msg, "Operation not permitted") {
				hint = " (is the helper setuid root, and does this session have no_new_privs set?)"
			}
			return fmt.Errorf("%s %s: %w: %s%s", helper, strings.Join(args, " "), err, msg, hint)
		}
		return nil
	}
	if err := run(files.NewUIDMap, p.UIDs); err != nil {
		return err
	}
	return run(files.NewGIDMap, p.GIDs)
}

// SysProcIDMaps converts entries for SysProcAttr.UidMappings/GidMappings.
func SysProcIDMaps(entries []Entry) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(entries))
	for i, e := range entries {
		out[i] = syscall.SysProcIDMap{ContainerID: int(e.Inside), HostID: int(e.Outside), Size: int(e.Size)}
	}
	return out
}

// CheckKernel reports, as an error that says what to change, kernel
// settings that stop unprivileged user namespaces.
func CheckKernel() error {
	read := func(p string) (string, bool) {
		b, err := os.ReadFile(p)
		return strings.TrimSpace(string(b)), err == nil
	}
	if v, ok := read("/proc/sys/user/max_user_namespaces"); ok && v == "0" {
		return errors.New("user namespaces are disabled: sysctl user.max_user_namespaces is 0 (set it to e.g. 15000)")
	}
	if v, ok := read("/proc/sys/kernel/unprivileged_userns_clone"); ok && v == "0" && os.Geteuid() != 0 {
		return errors.New("unprivileged user namespaces are disabled: set sysctl kernel.unprivileged_userns_clone=1")
	}
	if v, ok := read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"); ok && v == "1" && os.Geteuid() != 0 {
		return errors.New("AppArmor restricts unprivileged user namespaces: set sysctl kernel.apparmor_restrict_unprivileged_userns=0 or add an AppArmor profile for slirprun")
	}
	return nil
}
