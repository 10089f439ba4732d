package netem

import (
	"math"
	"net/netip"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Spec
	}{
		{"delay=50ms jitter=10ms loss=1%", Spec{
			Egress:  Impairment{Delay: 50 * time.Millisecond, Jitter: 10 * time.Millisecond, Loss: 0.01},
			Ingress: Impairment{Delay: 50 * time.Millisecond, Jitter: 10 * time.Millisecond, Loss: 0.01},
		}},
		{"egress:rate=10mbit,ingress:loss=0.5", Spec{Egress: Impairment{Rate: 10e6}, Ingress: Impairment{Loss: 0.5}}},
		{"duplicate=2% reorder=25% corrupt=0.1% rate=1mbps proto=udp port=53 dst=198.51.100.0/24", Spec{
			Egress:  Impairment{Duplicate: 0.02, Reorder: 0.25, Corrupt: 0.001, Rate: 8e6},
			Ingress: Impairment{Duplicate: 0.02, Reorder: 0.25, Corrupt: 0.001, Rate: 8e6},
			Match:   Selector{Proto: "udp", Port: 53, Dest: netip.MustParsePrefix("198.51.100.0/24")},
		}},
		{"partition", Spec{Partition: true}},
		{"blackhole=198.51.100.7 blackhole=203.0.113.0/24", Spec{Blackhole: []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32"), netip.MustParsePrefix("203.0.113.0/24")}}},
		{"dst=2001:db8::1", Spec{Match: Selector{Dest: netip.MustParsePrefix("2001:db8::1/128")}}},
		{"", Spec{}},
	} {
		got, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if !got.Equal(tc.want) {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		back, err := Parse(got.String())
		if err != nil || !back.Equal(got) {
			t.Errorf("Parse(String(%q) = %q) = %+v, %v", tc.in, got.String(), back, err)
		}
	}
	for _, bad := range []string{"delay", "delay=-1s", "loss=101%", "loss=abc", "rate=0", "proto=sctp", "port=0", "dst=nope", "sideways:loss=1%", "foo=1"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestLossRateWithinTolerance(t *testing.T) {
	e := NewEngine(1)
	e.Set(Spec{Egress: Impairment{Loss: 0.10}})
	dropped := 0
	now := time.Now()
	const n = 2000
	for i := 0; i < n; i++ {
		if e.Decide(Egress, now, Packet{Size: 100}).Drop {
			dropped++
		}
	}
	if got := float64(dropped) / n; math.Abs(got-0.10) > 0.02 {
		t.Fatalf("loss over %d packets = %.3f, want 0.10 ± 0.02", n, got)
	}
	// Ingress is untouched.
	if e.Decide(Ingress, now, Packet{Size: 100}).Drop {
		t.Fatal("ingress packet dropped by an egress-only loss")
	}
}

func TestSeedReplays(t *testing.T) {
	run := func() []Decision {
		e := NewEngine(42)
		e.Set(Spec{Egress: Impairment{Loss: 0.3, Jitter: 5 * time.Millisecond, Delay: 10 * time.Millisecond, Duplicate: 0.2}})
		now := time.Unix(0, 0)
		var out []Decision
		for i := 0; i < 500; i++ {
			out = append(out, e.Decide(Egress, now, Packet{Size: 1000}))
		}
		return out
	}
	a, b := run(), run()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("decision %d differs with the same seed: %+v vs %+v", i, a[i], b[i])
		}
	}
}

func TestJitterBounds(t *testing.T) {
	e := NewEngine(7)
	e.Set(Spec{Egress: Impairment{Delay: 50 * time.Millisecond, Jitter: 10 * time.Millisecond}})
	lo, hi := time.Hour, time.Duration(0)
	for i := 0; i < 2000; i++ {
		d := e.Decide(Egress, time.Now(), Packet{}).Delay
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 40*time.Millisecond || hi > 60*time.Millisecond || hi-lo < 15*time.Millisecond {
		t.Fatalf("delays in [%v, %v], want within [40ms, 60ms] and spread", lo, hi)
	}
}

func TestRateSpacesPackets(t *testing.T) {
	e := NewEngine(1)
	e.Set(Spec{Egress: Impairment{Rate: 8e6}}) // 1 MB/s
	now := time.Unix(0, 0)
	var last Decision
	for i := 0; i < 100; i++ {
		last = e.Decide(Egress, now, Packet{Size: 1000})
	}
	// 100 packets of 1000 bytes at 1 MB/s leave over 100 ms.
	if last.Delay != 100*time.Millisecond {
		t.Fatalf("the 100th 1000-byte packet at 1 MB/s leaves after %v, want 100ms", last.Delay)
	}
}

func TestSelector(t *testing.T) {
	s := Selector{Proto: "tcp", Port: 80, Dest: netip.MustParsePrefix("198.51.100.0/24")}
	in := Packet{Proto: "tcp", Ports: [2]uint16{40000, 80}, Remote: netip.MustParseAddr("198.51.100.9")}
	if !s.Matches(in) {
		t.Fatal("matching packet not selected")
	}
	for _, p := range []Packet{
		{Proto: "udp", Ports: in.Ports, Remote: in.Remote},
		{Proto: "tcp", Ports: [2]uint16{1, 2}, Remote: in.Remote},
		{Proto: "tcp", Ports: in.Ports, Remote: netip.MustParseAddr("203.0.113.1")},
	} {
		if s.Matches(p) {
			t.Errorf("%+v selected", p)
		}
	}
	e := NewEngine(1)
	e.Set(Spec{Egress: Impairment{Loss: 1}, Match: s})
	if e.Decide(Egress, time.Now(), Packet{Proto: "udp"}).Drop {
		t.Error("an unselected packet was impaired")
	}
	if !e.Decide(Egress, time.Now(), in).Drop {
		t.Error("a selected packet was not impaired")
	}
}

func TestPartition(t *testing.T) {
	e := NewEngine(1)
	e.Set(Spec{Partition: true})
	if !e.Decide(Egress, time.Now(), Packet{}).Drop || !e.Decide(Ingress, time.Now(), Packet{}).Drop || !e.Active() {
		t.Fatal("partition does not drop both ways")
	}
	e.Set(Spec{})
	if e.Decide(Egress, time.Now(), Packet{}).Drop || e.Active() {
		t.Fatal("healed partition still drops")
	}
}

func TestBlackhole(t *testing.T) {
	e := NewEngine(1)
	e.Set(Spec{Blackhole: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
	if !e.Decide(Ingress, time.Now(), Packet{Remote: netip.MustParseAddr("198.51.100.3")}).Drop {
		t.Error("packet to a blackholed address went through")
	}
	if e.Decide(Egress, time.Now(), Packet{Remote: netip.MustParseAddr("192.0.2.1")}).Drop {
		t.Error("packet from another address dropped")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"delay=50ms jitter=10ms loss=1%", "egress:rate=10mbit", "partition", "dst=::1 port=53 proto=udp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(spec.String())
		if err != nil {
			t.Fatalf("Parse(String()) of %q: %v", spec.String(), err)
		}
		_ = back
	})
}
