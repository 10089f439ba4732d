package slirp

import (
	"runtime"
	"runtime/debug"
	"time"
)

// Memory held by the Go runtime after a burst of traffic (packet buffers
// the collector has freed but not yet returned) shows in the daemon's RSS
// for minutes. When the network goes quiet after being busy, hand it back
// to the kernel at once: an idle daemon should be small (issue 6 asks for
// under 25 MB after a benchmark run).
const (
	idleCheckInterval = 2 * time.Second
	// busyBytes is how much traffic between two checks counts as a burst
	// worth reclaiming after.
	busyBytes = 8 << 20
)

// reclaimIdleMemory runs until the network closes.
func (n *Network) reclaimIdleMemory() {
	t := time.NewTicker(idleCheckInterval)
	defer t.Stop()
	var last uint64
	dirty := false
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		st := n.stack.Stats()
		total := st.LinkRxBytes + st.LinkTxBytes
		moved := total - last
		last = total
		switch {
		case moved >= busyBytes:
			dirty = true
		case moved == 0 && dirty:
			// Two collections: sync.Pool keeps what it holds through
			// one (its victim cache) and drops it at the next.
			runtime.GC()
			debug.FreeOSMemory()
			dirty = false
			n.log.Debug("network idle: returned free memory to the kernel")
		}
	}
}
