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
// UDP flows of the burst time out and free theirs, and whenever many of
// them have ended since the last check (an idle daemon should be small;
// issue 6 asks for under 25 MB after a benchmark run).
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

// quietCheckInterval is how often a network checks once it has been quiet
// for quietAfter checks with nothing left to reclaim: an idle daemon next
// to every container should not wake every 2 s for nothing.
const (
	quietCheckInterval = 30 * time.Second
	quietAfter         = 15
)

// reclaimIdleMemory runs until the network closes.
func (n *Network) reclaimIdleMemory() {
	t := time.NewTimer(idleCheckInterval)
	defer t.Stop()
	var r reclaimer
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		st := n.stack.Stats()
		flows := st.TCPOpened + st.TCPFailed + st.TCPDropped + st.UDPOpened + st.UDPDropped
		reclaim, next := r.check(st.LinkRxBytes+st.LinkTxBytes, flows, st.TCPActive+st.UDPActive)
		if reclaim {
			// Two collections: sync.Pool keeps what it holds through
			// one (its victim cache) and drops it at the next.
			runtime.GC()
			debug.FreeOSMemory()
			n.log.Debug("network idle: returned free memory to the kernel", "rounds_left", r.rounds)
		}
		t.Reset(next)
	}
}

// reclaimer decides, from the network's traffic counters at each check,
// when to hand memory back and when to check next.
type reclaimer struct {
	last, lastFlows uint64
	lastActive      int64
	// idleTicks counts checks without traffic; rounds is how many
	// reclaims are left after the last burst, the next at nextAt idle
	// checks.
	idleTicks, nextAt, rounds int
}

// check takes the total bytes and flows so far and the flows open now. It
// returns whether to reclaim now and how long to wait before the next
// check.
func (r *reclaimer) check(bytes, flows uint64, active int64) (reclaim bool, next time.Duration) {
	moved, newFlows := bytes-r.last, flows-r.lastFlows
	ended := r.lastActive - active
	r.last, r.lastFlows, r.lastActive = bytes, flows, active
	switch {
	case moved >= busyBytes || newFlows >= busyFlows:
		r.rounds, r.idleTicks, r.nextAt = reclaimRounds, 0, 1
	case moved > 0 || newFlows > 0:
		r.idleTicks = 0
	default:
		r.idleTicks++
		if r.rounds > 0 && r.idleTicks >= r.nextAt {
			r.rounds--
			r.nextAt *= 2
			reclaim = true
		}
		if ended >= busyFlows {
			// A burst of idle flows timed out (UDP flows, TIME_WAIT)
			// since the last check: what they held is garbage now,
			// and the next round may be a minute away.
			reclaim = true
		}
	}
	if r.rounds == 0 && r.idleTicks >= quietAfter {
		return reclaim, quietCheckInterval
	}
	return reclaim, idleCheckInterval
}
