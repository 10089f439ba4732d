package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"
)

// peerCommand is the first argument that makes the bench binary run as the
// guest side of a workload. The harness runs it inside the guest namespace
// through nsenter; it prints one JSON object on stdout.
const peerCommand = "peer"

// runPeer runs one guest-side program and returns the exit status.
func runPeer(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: bench peer mtu|latency|connrate|idle [flags]")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	fs := flag.NewFlagSet("peer "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "server address (host:port)")
	addrs := fs.String("addrs", "", "server addresses, comma-separated (connrate)")
	count := fs.Int("count", 10000, "round trips to measure (latency)")
	warmup := fs.Int("warmup", 1000, "round trips to discard first (latency)")
	duration := fs.Duration("duration", 5*time.Second, "how long to open connections (connrate)")
	n := fs.Int("n", 1000, "connections to hold open (idle)")
	iface := fs.String("iface", tapName, "interface (mtu)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	var out any
	var err error
	switch args[0] {
	case "mtu":
		var ifi *net.Interface
		if ifi, err = net.InterfaceByName(*iface); err == nil {
			out = map[string]int{"mtu": ifi.MTU}
		}
	case "latency":
		out, err = pingPong(ctx, *addr, *warmup, *count)
	case "connrate":
		out, err = connRate(ctx, strings.Split(*addrs, ","), *duration)
	case "idle":
		err = holdIdle(ctx, *addr, *n, stdin, stdout)
	default:
		err = fmt.Errorf("unknown peer program %q", args[0])
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench peer:", err)
		return 1
	}
	if out != nil {
		if err := json.NewEncoder(stdout).Encode(out); err != nil {
			return 1
		}
	}
	return 0
}

// latencyResult is the distribution of 1-byte round trips.
type latencyResult struct {
	Samples int     `json:"samples"`
	P50us   float64 `json:"p50_us"`
	P90us   float64 `json:"p90_us"`
	P99us   float64 `json:"p99_us"`
	MeanUs  float64 `json:"mean_us"`
}

// pingPong opens one connection and times count round trips of one byte
// each way, after warmup untimed ones.
func pingPong(ctx context.Context, addr string, warmup, count int) (latencyResult, error) {
	if count <= 0 {
		return latencyResult{}, errors.New("count must be positive")
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return latencyResult{}, fmt.Errorf("connect to %s: %w", addr, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	buf := []byte{'x'}
	samples := make([]time.Duration, 0, count)
	for i := range warmup + count {
		t0 := time.Now()
		if _, err := c.Write(buf); err != nil {
			return latencyResult{}, fmt.Errorf("round trip %d: %w", i, err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return latencyResult{}, fmt.Errorf("round trip %d: %w", i, err)
		}
		if i >= warmup {
			samples = append(samples, time.Since(t0))
		}
	}
	return summarize(samples), nil
}

// summarize computes the percentiles (nearest rank) and the mean.
func summarize(samples []time.Duration) latencyResult {
	if len(samples) == 0 {
		return latencyResult{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	rank := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return latencyResult{
		Samples: len(s),
		P50us:   us(rank(0.50)),
		P90us:   us(rank(0.90)),
		P99us:   us(rank(0.99)),
		MeanUs:  us(sum / time.Duration(len(s))),
	}
}

// connRateResult counts the connections completed in a run.
type connRateResult struct {
	Conns      int     `json:"conns"`
	Errors     int     `json:"errors"`
	Seconds    float64 `json:"seconds"`
	FirstError string  `json:"first_error,omitempty"`
}

// maxConnErrors ends a connection-rate run that keeps failing.
const maxConnErrors = 100

// connRate opens connections one after another for d: connect, one byte
// each way, close. It cycles through several server ports, because the
// guest keeps each closed connection in TIME_WAIT for a minute and a
// single destination would run out of source ports at high rates.
func connRate(ctx context.Context, addrs []string, d time.Duration) (connRateResult, error) {
	if len(addrs) == 0 || addrs[0] == "" {
		return connRateResult{}, errors.New("no server address")
	}
	var r connRateResult
	dialer := net.Dialer{Timeout: 2 * time.Second}
	buf := []byte{'x'}
	one := func(addr string) error {
		c, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(buf); err != nil {
			return err
		}
		_, err = io.ReadFull(c, buf)
		return err
	}
	t0 := time.Now()
	for i := 0; time.Since(t0) < d && ctx.Err() == nil; i++ {
		if err := one(addrs[i%len(addrs)]); err != nil {
			r.Errors++
			if r.FirstError == "" {
				r.FirstError = err.Error()
			}
			if r.Errors >= maxConnErrors {
				break
			}
			continue
		}
		r.Conns++
	}
	r.Seconds = time.Since(t0).Seconds()
	if r.Conns == 0 {
		return r, fmt.Errorf("no connection completed: %s", r.FirstError)
	}
	return r, nil
}

// rate is connections per second.
func (r connRateResult) rate() float64 {
	if r.Seconds <= 0 {
		return 0
	}
	return float64(r.Conns) / r.Seconds
}

// holdIdle opens n connections to addr, sends one byte on each, prints
// {"open":n} and keeps them until stdin closes.
func holdIdle(ctx context.Context, addr string, n int, stdin io.Reader, stdout io.Writer) error {
	conns, err := openIdle(ctx, addr, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err != nil {
		return err
	}
	if err := json.NewEncoder(stdout).Encode(map[string]int{"open": len(conns)}); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, stdin)
	return nil
}

// openIdle opens n connections to addr and writes one byte on each.
func openIdle(ctx context.Context, addr string, n int) ([]net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	conns := make([]net.Conn, 0, n)
	for i := range n {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return conns, fmt.Errorf("idle connection %d of %d: %w", i+1, n, err)
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte{'x'}); err != nil {
			return conns, fmt.Errorf("idle connection %d of %d: %w", i+1, n, err)
		}
	}
	return conns, nil
}

// readPeerJSON decodes the one JSON line a peer prints.
func readPeerJSON(r *bufio.Reader, v any) error {
	line, err := r.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return fmt.Errorf("read peer output: %w", err)
	}
	if err := json.Unmarshal(line, v); err != nil {
		return fmt.Errorf("parse peer output %q: %w", truncate(line, 200), err)
	}
	return nil
}
