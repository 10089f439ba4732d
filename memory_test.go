package slirp

import (
	"testing"
	"time"
)

func TestReclaimerSchedule(t *testing.T) {
	var r reclaimer
	var bytes, flows uint64
	type step struct {
		addBytes, addFlows uint64
		reclaim            bool
		next               time.Duration
	}
	fast, quiet := idleCheckInterval, quietCheckInterval
	steps := []step{
		// Light traffic: no burst, nothing to reclaim.
		{addBytes: 1000, next: fast},
		{next: fast},
		// A burst of bytes, then quiet: reclaims after 1, 2, 4, 8, 16
		// and 32 idle checks.
		{addBytes: busyBytes, next: fast},
		{reclaim: true, next: fast},  // idle 1
		{reclaim: true, next: fast},  // idle 2
		{next: fast},                 // idle 3
		{reclaim: true, next: fast},  // idle 4
		{addBytes: 10, next: fast},   // traffic: the idle count restarts
		{reclaim: false, next: fast}, // idle 1 (next reclaim at 8)
	}
	for i := 0; i < 7; i++ {
		steps = append(steps, step{next: fast}) // idle 2..8
	}
	steps[len(steps)-1].reclaim = true // idle 8
	for i, s := range steps {
		bytes += s.addBytes
		flows += s.addFlows
		reclaim, next := r.check(bytes, flows, 0)
		if reclaim != s.reclaim || next != s.next {
			t.Fatalf("check %d: reclaim %v, next %v; want %v, %v", i, reclaim, next, s.reclaim, s.next)
		}
	}

	// A burst of new flows that moves few bytes counts too; once every
	// round is done and the network has stayed quiet, checks slow down,
	// and traffic brings the fast checks back.
	r = reclaimer{last: bytes, lastFlows: flows}
	flows += busyFlows
	if reclaim, _ := r.check(bytes, flows, 0); reclaim {
		t.Fatal("reclaimed during the burst")
	}
	reclaims := 0
	var next time.Duration
	for i := 0; i < 200 && next != quiet; i++ {
		var reclaim bool
		reclaim, next = r.check(bytes, flows, 0)
		if reclaim {
			reclaims++
		}
	}
	if reclaims != reclaimRounds || next != quiet {
		t.Fatalf("after a burst of flows: %d reclaims, then checks every %v; want %d, then %v", reclaims, next, reclaimRounds, quiet)
	}
	if _, next := r.check(bytes+1, flows, 0); next != fast {
		t.Fatalf("traffic after a quiet spell: next check in %v, want %v", next, fast)
	}
}

// TestReclaimerFlowsEnd checks that many flows ending on a quiet network
// (UDP flows and TIME_WAIT timing out after a burst) reclaim at the next
// check, between the rounds of the schedule, and that a few do not.
func TestReclaimerFlowsEnd(t *testing.T) {
	var r reclaimer
	// A burst opens 4096 flows; its rounds then reclaim at idle checks 1
	// and 2.
	r.check(busyBytes, 4096, 4096)
	for i := range 2 {
		if reclaim, _ := r.check(busyBytes, 4096, 4096); !reclaim {
			t.Fatalf("idle check %d after the burst: no reclaim", i+1)
		}
	}
	// Idle check 3, between rounds: a few flows end, nothing to do.
	if reclaim, _ := r.check(busyBytes, 4096, 4096-busyFlows+1); reclaim {
		t.Fatal("reclaimed after fewer than busyFlows flows ended")
	}
	// Idle check 4 is a round anyway; check 5 is not, but the rest of
	// the flows end before it.
	r.check(busyBytes, 4096, 4096-busyFlows+1)
	if reclaim, _ := r.check(busyBytes, 4096, 0); !reclaim {
		t.Fatal("no reclaim after the burst's flows ended")
	}
	// Flows ending while traffic flows wait for the schedule: a reclaim
	// would only slow the traffic down.
	r.check(busyBytes, 4096, 4096)
	if reclaim, _ := r.check(2*busyBytes, 4096, 0); reclaim {
		t.Fatal("reclaimed while traffic was flowing")
	}
}
