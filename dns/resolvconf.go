package dns

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultResolvConf is the resolv.conf followed when Config.ResolvConf is
// empty.
const DefaultResolvConf = "/etc/resolv.conf"

// resolvConfRecheck is how long a parsed resolv.conf is trusted before the
// file is looked at again. libslirp uses the same one second: cheap enough
// to do on the query path, quick enough that a VPN or network change is
// picked up before the guest's resolver gives up.
const resolvConfRecheck = time.Second

// parseResolvConf returns the nameservers a resolv.conf lists, in order, as
// port-53 addresses. Like glibc it looks only at "nameserver ADDR" lines and
// ignores everything else, including lines whose address does not parse.
// IPv6 addresses may carry a zone ("fe80::1%eth0"), which link-local
// nameservers need. IPv4-mapped IPv6 addresses are unmapped so they are
// dialed as IPv4.
func parseResolvConf(data []byte) []netip.AddrPort {
	var servers []netip.AddrPort
	for line := range bytes.Lines(data) {
		fields := strings.Fields(string(line))
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		addr, err := netip.ParseAddr(fields[1])
		if err != nil {
			continue
		}
		servers = append(servers, netip.AddrPortFrom(addr.Unmap(), 53))
	}
	return servers
}

// fileIdent is what tells one version of a file from another without
// reading it: the same test libslirp makes (device, inode, size, mtime).
// A file replaced by rename gets a new inode; one rewritten in place gets a
// new mtime or size.
type fileIdent struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
	missing  bool
}

func identOf(fi fs.FileInfo) fileIdent {
	id := fileIdent{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
	}
	return id
}

// resolvConf follows one resolv.conf file. It is safe for concurrent use.
type resolvConf struct {
	path    string
	log     *slog.Logger
	recheck time.Duration

	// mu guards the fields below; it is held while the file is read, which
	// is small and local.
	mu sync.Mutex
	// checked is when the file was last looked at.
	checked time.Time
	// loaded says whether the file was looked at at all.
	loaded bool
	// ident identifies the version of the file servers came from.
	ident fileIdent
	// servers is the parsed list; never modified, only replaced.
	servers []netip.AddrPort
	// state is "ok", "empty" or "unreadable": a change of state is
	// logged even when the (empty) list stays the same.
	state string
}

func newResolvConf(path string, log *slog.Logger) *resolvConf {
	return &resolvConf{path: path, log: log, recheck: resolvConfRecheck}
}

// nameservers returns the current nameserver list, re-reading the file when
// it changed and the last look is older than r.recheck. changed reports
// that the list differs from the one returned before, so callers can drop
// answers cached from the old upstreams.
//
// A missing, unreadable or empty file gives an empty list; that state is
// logged once, as a warning, when it starts, not on every query.
func (r *resolvConf) nameservers(now time.Time) (servers []netip.AddrPort, changed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.loaded && now.Sub(r.checked) < r.recheck && now.Sub(r.checked) >= 0 {
		return r.servers, false
	}
	r.checked = now

	var ident fileIdent
	fi, err := os.Stat(r.path)
	if err != nil {
		ident = fileIdent{missing: true}
	} else {
		ident = identOf(fi)
	}
	if r.loaded && ident == r.ident {
		return r.servers, false
	}

	var next []netip.AddrPort
	if err == nil {
		var data []byte
		data, err = os.ReadFile(r.path)
		if err == nil {
			next = parseResolvConf(data)
		}
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) && r.loaded && !r.ident.missing {
		// A transient read error on a file that was readable before:
		// keep the old list rather than cut the guest off, and look
		// again after recheck.
		r.log.Warn("cannot re-read resolv.conf; keeping the previous nameservers",
			slog.String("path", r.path), slog.Any("error", err))
		return r.servers, false
	}

	state := "ok"
	switch {
	case err != nil:
		state = "unreadable"
	case len(next) == 0:
		state = "empty"
	}
	changed = r.loaded && !slices.Equal(next, r.servers)
	logIt := !r.loaded || changed || state != r.state
	r.loaded, r.ident, r.servers, r.state = true, ident, next, state
	if !logIt {
		return next, false
	}
	switch state {
	case "unreadable":
		r.log.Warn("cannot read resolv.conf; answering DNS queries with SERVFAIL until it is readable",
			slog.String("path", r.path), slog.Any("error", err))
	case "empty":
		r.log.Warn("resolv.conf lists no nameserver; answering DNS queries with SERVFAIL until it does",
			slog.String("path", r.path))
	default:
		r.log.Info("DNS upstreams from resolv.conf",
			slog.String("path", r.path), slog.Any("nameservers", next))
	}
	return next, changed
}
