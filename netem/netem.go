// Package netem describes and decides network impairments: delay, jitter,
// loss, duplication, reordering, corruption and rate limits, per direction,
// optionally only for packets that match a selector, plus partitions that
// drop everything. It is the policy half of the daemon's test-rig feature;
// the netstack applies the decisions to real packets inside the user-mode
// stack, so no privilege (tc netem) is needed.
//
// Decisions come from a seeded pseudo-random source, so that with the same
// seed and the same packets a failing chaos test replays identically.
package netem

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Direction is the way a packet travels.
type Direction int

const (
	// Egress is from the stack to the guest (what the guest receives).
	Egress Direction = iota
	// Ingress is from the guest to the stack (what the guest sends).
	Ingress
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Impairment is what happens to the packets of one direction.
type Impairment struct {
	Delay     time.Duration `json:"delay,omitempty"`     // added to every packet
	Jitter    time.Duration `json:"jitter,omitempty"`    // uniform ± around Delay
	Loss      float64       `json:"loss,omitempty"`      // probability 0..1
	Duplicate float64       `json:"duplicate,omitempty"` // probability of a second copy
	Reorder   float64       `json:"reorder,omitempty"`   // probability a packet skips the delay
	Corrupt   float64       `json:"corrupt,omitempty"`   // probability of one flipped bit
	Rate      uint64        `json:"rate,omitempty"`      // bits per second; 0 = unlimited
}

// IsZero says the impairment does nothing.
func (i Impairment) IsZero() bool { return i == Impairment{} }

// Selector limits impairments to some packets; the zero value matches all.
type Selector struct {
	Proto string       `json:"proto,omitempty"` // "tcp", "udp", "icmp" or ""
	Port  uint16       `json:"port,omitempty"`  // source or destination port; 0 = any
	Dest  netip.Prefix `json:"dest,omitempty"`  // the remote (non-guest) address; zero = any
}

// Packet is what a Selector looks at.
type Packet struct {
	Proto  string     // "tcp", "udp", "icmp" or other
	Ports  [2]uint16  // source and destination port
	Remote netip.Addr // the address on the far side from the guest
	Size   int        // bytes on the wire
}

// Matches says the selector applies to p.
func (s Selector) Matches(p Packet) bool {
	if s.Proto != "" && s.Proto != p.Proto {
		return false
	}
	if s.Port != 0 && p.Ports[0] != s.Port && p.Ports[1] != s.Port {
		return false
	}
	if s.Dest.IsValid() && !s.Dest.Contains(p.Remote) {
		return false
	}
	return true
}

// Spec is the whole configuration.
type Spec struct {
	Egress  Impairment `json:"egress"`
	Ingress Impairment `json:"ingress"`
	Match   Selector   `json:"match"`
	// Partition drops every packet both ways: established connections
	// stall and new ones time out.
	Partition bool `json:"partition,omitempty"`
	// Blackhole drops every packet to and from these remote addresses.
	Blackhole []netip.Prefix `json:"blackhole,omitempty"`
}

// Equal says two specs are the same.
func (s Spec) Equal(o Spec) bool {
	if s.Egress != o.Egress || s.Ingress != o.Ingress || s.Match != o.Match || s.Partition != o.Partition || len(s.Blackhole) != len(o.Blackhole) {
		return false
	}
	for i := range s.Blackhole {
		if s.Blackhole[i] != o.Blackhole[i] {
			return false
		}
	}
	return true
}

// Decision is what to do with one packet.
type Decision struct {
	Drop    bool
	Copies  int           // 1, or 2 when duplicated
	Delay   time.Duration // from now until the packet may leave
	Corrupt bool          // flip one bit (chosen by CorruptBit)
	// CorruptBit is a random number to pick the bit with.
	CorruptBit uint64
}

// Engine decides for both directions. It is safe for concurrent use; with a
// fixed seed, the same sequence of Decide calls gives the same decisions.
type Engine struct {
	// active mirrors "spec impairs something", read on every packet
	// without the lock.
	active atomic.Bool

	mu   sync.Mutex
	spec Spec       // +checklocks:mu
	rng  *rand.Rand // +checklocks:mu
	// free is when the rate limiter of each direction next has room.
	free [2]time.Time // +checklocks:mu
}

// NewEngine returns an engine with no impairment.
func NewEngine(seed uint64) *Engine {
	return &Engine{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Set replaces the configuration; it applies to the next packet.
func (e *Engine) Set(s Spec) {
	e.mu.Lock()
	e.spec = s
	e.active.Store(s.Partition || len(s.Blackhole) > 0 || !s.Egress.IsZero() || !s.Ingress.IsZero())
	e.mu.Unlock()
}

// Spec returns the configuration.
func (e *Engine) Spec() Spec {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.spec
}

// Active says some packet may be affected (so callers can skip parsing
// packets when nothing is configured).
func (e *Engine) Active() bool { return e.active.Load() }

// Decide returns what happens to packet p travelling in direction d at now.
func (e *Engine) Decide(d Direction, now time.Time, p Packet) Decision {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.spec.Partition {
		return Decision{Drop: true}
	}
	for _, b := range e.spec.Blackhole {
		if p.Remote.IsValid() && b.Contains(p.Remote) {
			return Decision{Drop: true}
		}
	}
	imp := e.spec.Egress
	if d == Ingress {
		imp = e.spec.Ingress
	}
	if imp.IsZero() || !e.spec.Match.Matches(p) {
		return Decision{Copies: 1}
	}
	if imp.Loss > 0 && e.rng.Float64() < imp.Loss {
		return Decision{Drop: true}
	}
	dec := Decision{Copies: 1}
	if imp.Duplicate > 0 && e.rng.Float64() < imp.Duplicate {
		dec.Copies = 2
	}
	if imp.Corrupt > 0 && e.rng.Float64() < imp.Corrupt {
		dec.Corrupt, dec.CorruptBit = true, e.rng.Uint64()
	}
	delay := imp.Delay
	if imp.Jitter > 0 {
		delay += time.Duration(e.rng.Int64N(int64(2*imp.Jitter)+1)) - imp.Jitter
	}
	if imp.Reorder > 0 && e.rng.Float64() < imp.Reorder {
		delay = 0
	}
	if delay < 0 {
		delay = 0
	}
	if imp.Rate > 0 {
		// A token bucket of one packet: each packet leaves when the link
		// has finished sending the previous ones.
		start := now
		if e.free[d].After(start) {
			start = e.free[d]
		}
		tx := time.Duration(float64(p.Size*dec.Copies*8) / float64(imp.Rate) * float64(time.Second))
		e.free[d] = start.Add(tx)
		delay += e.free[d].Sub(now)
	}
	dec.Delay = delay
	return dec
}

// Parse reads the --netem and `slirpctl netem set` syntax: space- or
// comma-separated KEY=VALUE words, and the words "partition" and "none".
// blackhole=PREFIX (repeatable) drops everything to and from PREFIX. Impairment keys (delay, jitter, loss,
// duplicate, reorder, corrupt, rate) apply to both directions unless
// prefixed with "egress:" or "ingress:"; selector keys are proto, port and
// dst. Percentages take a % sign ("1%") or are fractions ("0.01"); rates
// take bit units (kbit, mbit, gbit) or byte units (kbps, mbps, gbps).
//
//	delay=50ms jitter=10ms loss=1% egress:rate=10mbit proto=tcp port=80
func Parse(s string) (Spec, error) {
	var spec Spec
	words := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' || r == '\n' })
	for _, w := range words {
		if w == "partition" {
			spec.Partition = true
			continue
		}
		if w == "none" {
			continue
		}
		k, v, ok := strings.Cut(w, "=")
		if !ok || v == "" {
			return Spec{}, fmt.Errorf("netem: %q: want KEY=VALUE", w)
		}
		dirs := []*Impairment{&spec.Egress, &spec.Ingress}
		if dir, key, ok := strings.Cut(k, ":"); ok {
			switch dir {
			case "egress":
				dirs = dirs[:1]
			case "ingress":
				dirs = dirs[1:]
			default:
				return Spec{}, fmt.Errorf("netem: %q: the direction must be egress: or ingress:", w)
			}
			k = key
		}
		if err := apply(&spec, dirs, k, v); err != nil {
			return Spec{}, fmt.Errorf("netem: %s: %w", w, err)
		}
	}
	return spec, nil
}

func apply(spec *Spec, dirs []*Impairment, k, v string) error {
	set := func(f func(*Impairment)) {
		for _, d := range dirs {
			f(d)
		}
	}
	switch k {
	case "delay", "jitter":
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("want a duration such as 50ms")
		}
		if k == "delay" {
			set(func(i *Impairment) { i.Delay = d })
		} else {
			set(func(i *Impairment) { i.Jitter = d })
		}
	case "loss", "duplicate", "reorder", "corrupt":
		p, err := parseProbability(v)
		if err != nil {
			return err
		}
		set(func(i *Impairment) {
			switch k {
			case "loss":
				i.Loss = p
			case "duplicate":
				i.Duplicate = p
			case "reorder":
				i.Reorder = p
			default:
				i.Corrupt = p
			}
		})
	case "rate":
		r, err := ParseRate(v)
		if err != nil {
			return err
		}
		set(func(i *Impairment) { i.Rate = r })
	case "proto":
		switch v {
		case "tcp", "udp", "icmp":
			spec.Match.Proto = v
		default:
			return fmt.Errorf("want tcp, udp or icmp")
		}
	case "port":
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("want a port number 1-65535")
		}
		spec.Match.Port = uint16(n)
	case "dst", "blackhole":
		p, err := ParsePrefix(v)
		if err != nil {
			return err
		}
		if k == "dst" {
			spec.Match.Dest = p
		} else {
			spec.Blackhole = append(spec.Blackhole, p)
		}
	default:
		return fmt.Errorf("unknown key %q (delay, jitter, loss, duplicate, reorder, corrupt, rate, proto, port, dst, blackhole)", k)
	}
	return nil
}

// ParsePrefix reads an address or a prefix; an address is a one-address
// prefix.
func ParsePrefix(v string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		a, aerr := netip.ParseAddr(v)
		if aerr != nil {
			return netip.Prefix{}, fmt.Errorf("want an address or a prefix such as 198.51.100.0/24")
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return p.Masked(), nil
}

func parseProbability(v string) (float64, error) {
	pct := strings.HasSuffix(v, "%")
	f, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
	if err != nil || math.IsNaN(f) {
		return 0, fmt.Errorf("want a percentage such as 1%% or a fraction such as 0.01")
	}
	if pct {
		f /= 100
	}
	if f < 0 || f > 1 {
		return 0, fmt.Errorf("a probability must be between 0%% and 100%%")
	}
	return f, nil
}

// ParseRate reads a rate: a number with bit (bit, kbit, mbit, gbit) or byte
// (bps, kbps, mbps, gbps) units, as tc does; a bare number is bits/s.
func ParseRate(v string) (uint64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{
		{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1},
		{"gbps", 8e9}, {"mbps", 8e6}, {"kbps", 8e3}, {"bps", 8},
	}
	lv := strings.ToLower(v)
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(lv, u.suffix) {
			lv, mult = strings.TrimSuffix(lv, u.suffix), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(lv, 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || f*mult > math.MaxUint64/2 {
		return 0, fmt.Errorf("want a rate such as 10mbit")
	}
	return uint64(f * mult), nil
}

// String formats s in the Parse syntax.
func (s Spec) String() string {
	var w []string
	if s.Partition {
		w = append(w, "partition")
	}
	add := func(prefix string, i Impairment) {
		if i.Delay != 0 {
			w = append(w, prefix+"delay="+i.Delay.String())
		}
		if i.Jitter != 0 {
			w = append(w, prefix+"jitter="+i.Jitter.String())
		}
		for _, p := range []struct {
			k string
			v float64
		}{{"loss", i.Loss}, {"duplicate", i.Duplicate}, {"reorder", i.Reorder}, {"corrupt", i.Corrupt}} {
			if p.v != 0 {
				w = append(w, prefix+p.k+"="+strconv.FormatFloat(p.v*100, 'g', -1, 64)+"%")
			}
		}
		if i.Rate != 0 {
			w = append(w, prefix+"rate="+strconv.FormatUint(i.Rate, 10)+"bit")
		}
	}
	if s.Egress == s.Ingress {
		add("", s.Egress)
	} else {
		add("egress:", s.Egress)
		add("ingress:", s.Ingress)
	}
	if s.Match.Proto != "" {
		w = append(w, "proto="+s.Match.Proto)
	}
	if s.Match.Port != 0 {
		w = append(w, "port="+strconv.Itoa(int(s.Match.Port)))
	}
	if s.Match.Dest.IsValid() {
		w = append(w, "dst="+s.Match.Dest.String())
	}
	for _, b := range s.Blackhole {
		w = append(w, "blackhole="+b.String())
	}
	if len(w) == 0 {
		return "none"
	}
	return strings.Join(w, " ")
}
