package reliability

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/e2etest"
)

// The goroutine-leak check. The daemon is another process, so its
// goroutines are counted the one way Go offers from outside: SIGQUIT makes
// the runtime print every goroutine's stack and exit. A scenario's daemon
// is dumped when the scenario is over and compared with a reference
// daemon, started the same way, that did only the warm-up: any goroutine
// the scenario's daemon has beyond the reference's is a leak.

// dumpGoroutines stops the daemon with SIGQUIT and returns its goroutines
// counted by entry function (the outermost frame of each stack, so that
// goroutines started by one function count together whatever they are
// blocked in). The runtime's own goroutines are left out: how many GC
// workers exist depends on the load, not on the daemon's code.
func (d *daemon) dumpGoroutines(t *testing.T) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, block := range strings.Split(d.quit(t), "\ngoroutine ")[1:] {
		if entry := goroutineEntry(block); entry != "" && !strings.HasPrefix(entry, "runtime.") {
			counts[entry]++
		}
	}
	return counts
}

// quit stops the daemon with SIGQUIT and returns the goroutine dump the Go
// runtime prints then.
func (d *daemon) quit(t *testing.T) string {
	t.Helper()
	return quit(t, d.p)
}

// quit is daemon.quit for the process p.
func quit(t *testing.T, p *e2etest.Process) string {
	t.Helper()
	p.Cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("slirp did not exit within 30s of SIGQUIT")
	}
	out := p.Stderr.String()
	i := strings.Index(out, "SIGQUIT: quit")
	if i < 0 {
		t.Fatalf("slirp printed no goroutine dump after SIGQUIT; stderr:\n%s", e2etest.Tail(out, 4096))
	}
	return out[i:]
}

// goroutineEntry is the outermost frame's function of one goroutine's
// stack in a dump, leaving out the wrappers every goroutine has; for a
// goroutine whose stack the dump does not show (it was running on another
// thread) it is "created by" and the function that started it.
func goroutineEntry(block string) string {
	var entry, creator string
	for _, line := range strings.Split(block, "\n")[1:] {
		if line == "" || strings.HasPrefix(line, "\t") || strings.HasPrefix(line, " ") {
			continue // a file:line, or the end of the dump's list
		}
		if c, ok := strings.CutPrefix(line, "created by "); ok {
			creator, _, _ = strings.Cut(c, " in goroutine")
			break
		}
		fn := line
		if j := strings.LastIndex(fn, "("); j > 0 {
			fn = fn[:j]
		}
		switch {
		case fn == "runtime.goexit", strings.HasPrefix(fn, "sync.(*WaitGroup).Go"), strings.Contains(fn, ".gowrap"):
			continue
		}
		entry = fn
	}
	switch {
	case strings.HasPrefix(creator, "runtime."):
		return "runtime." // the runtime's own
	case entry == "" && creator != "":
		return "created by " + creator
	}
	return entry
}

var (
	refMu         sync.Mutex
	refGoroutines = map[string]map[string]int{}
)

// referenceGoroutines returns the goroutines of a daemon started with o
// that did only the warm-up, once per set of options.
func referenceGoroutines(t *testing.T, o envOpts) map[string]int {
	t.Helper()
	key := strings.Join(o.args, " ")
	if o.load {
		key += " (load build)"
	}
	refMu.Lock()
	defer refMu.Unlock()
	if ref, ok := refGoroutines[key]; ok {
		return ref
	}
	e := newEnv(t, o)
	baseline(t, e)
	ref := e.d.dumpGoroutines(t)
	refGoroutines[key] = ref
	return ref
}

// noGoroutineLeak dumps the scenario's daemon (which ends it) and fails the
// test if it has goroutines a fresh daemon started the same way does not.
func noGoroutineLeak(t *testing.T, e *env) {
	t.Helper()
	o := e.opts
	o.router = nil
	ref := referenceGoroutines(t, o)
	// The dump (SIGQUIT) ends the daemon, so it is taken once: give the
	// API server a moment to finish the connection of the test's last
	// /v1/stats request, which it closes right after the reply.
	time.Sleep(200 * time.Millisecond)
	got := e.d.dumpGoroutines(t)
	// The totals decide (a goroutine caught running has no stack to name
	// it by, so names may differ where counts do not); the names say
	// where to look.
	total, refTotal := 0, 0
	for _, n := range got {
		total += n
	}
	for _, n := range ref {
		refTotal += n
	}
	if total > refTotal {
		var extra []string
		for _, entry := range slices.Sorted(maps.Keys(got)) {
			if got[entry] > ref[entry] {
				extra = append(extra, fmt.Sprintf("%s: %d (fresh: %d)", entry, got[entry], ref[entry]))
			}
		}
		t.Errorf("goroutine leak: the daemon has %d goroutines after the scenario, a fresh one %d; more than fresh in:\n%s",
			total, refTotal, strings.Join(extra, "\n"))
	}
	figure(t, "daemon goroutines after the scenario: %d (a fresh daemon: %d)", total, refTotal)
}
