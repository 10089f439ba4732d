package slirp

import (
	"runtime/metrics"

	"github.com/slirp-dev/slirp/netstack"
)

// apiStats are the counters GET /v1/stats serves under "stack": the
// stack's, and what the Go runtime holds, so that a long-running daemon's
// memory can be watched without a profiler.
type apiStats struct {
	netstack.Stats
	// GoHeapBytes is the memory in live and not yet collected objects;
	// it comes back down when connections end, whereas the RSS keeps the
	// runtime's metadata for the largest heap the process ever had.
	GoHeapBytes uint64 `json:"go_heap_bytes"`
	// Goroutines counts goroutines: one per connection relayed, plus one
	// while the guest's bytes of a connection are being copied.
	Goroutines uint64 `json:"goroutines"`
}

var runtimeSamples = []string{"/memory/classes/heap/objects:bytes", "/sched/goroutines:goroutines"}

// apiStackStats reads the counters now (runtime/metrics does not stop the
// world, unlike runtime.ReadMemStats).
func (n *Network) apiStackStats() any {
	s := make([]metrics.Sample, len(runtimeSamples))
	for i, name := range runtimeSamples {
		s[i].Name = name
	}
	metrics.Read(s)
	st := apiStats{Stats: n.stack.Stats()}
	if s[0].Value.Kind() == metrics.KindUint64 {
		st.GoHeapBytes = s[0].Value.Uint64()
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		st.Goroutines = s[1].Value.Uint64()
	}
	return st
}
