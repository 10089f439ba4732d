package slirp

import (
	"runtime"
	"runtime/debug"
	"time"
)

// Memory held by the Go runtime after a burst of traffic (packet buffers
// the collector has freed but not yet returned) shows in the daemon's RSS
// for minutes. When the network goes quiet after being busy, hand it back
// to the kernel: at once, and again a few times as the connections and
// UDP flows of the burst time out and free theirs (an idle daemon should
// be small; issue 6 asks for under 25 MB after a benchmark run).
const (
	idleCheckInterval = 2 * time.Second
	// busyBytes is how much traffic between two checks counts as a burst
	// worth reclaiming after; busyFlows is how many new connections and
	// flows do (a SYN flood moves few bytes but many goroutine stacks).
	busyBytes = 8 << 20
	busyFlows = 256
	// reclaimRounds is how many times an idle network reclaims after a
	// burst, each after twice the wait of the one before (2 s ... 64 s):
	// long enough to cover UDP flow expiry and TIME_WAIT.
	reclaimRounds = 6
)

// reclaimIdleMemory runs until the network closes.
func (n *Network) reclaimIdleMemory() {
	t := time.NewTicker(idleCheckInterval)
	defer t.Stop()
	var last, lastFlows uint64
	var idleTicks, nextAt, rounds int
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
		flows := st.TCPOpened + st.TCPFailed + st.TCPDropped + st.UDPOpened + st.UDPDropped
		newFlows := flows - lastFlows
		lastFlows = flows
		switch {
		case moved >= busyBytes || newFlows >= busyFlows:
			rounds, idleTicks, nextAt = reclaimRounds, 0, 1
		case moved > 0:
			idleTicks = 0
		case rounds > 0:
			idleTicks++
			if idleTicks < nextAt {
				continue
			}
			// Two collections: sync.Pool keeps what it holds through
			// one (its victim cache) and drops it at the next.
			runtime.GC()
			debug.FreeOSMemory()
			rounds--
			nextAt *= 2
			n.log.Debug("network idle: returned free memory to the kernel", "rounds_left", rounds)
		}
	}
}
