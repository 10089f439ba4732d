package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	var s []time.Duration
	for i := 100; i >= 1; i-- { // 1..100 µs, given in reverse
		s = append(s, time.Duration(i)*time.Microsecond)
	}
	got := summarize(s)
	want := latencyResult{Samples: 100, P50us: 50, P90us: 90, P99us: 99, MeanUs: 50.5}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	if s[0] != 100*time.Microsecond {
		t.Errorf("summarize reordered its input")
	}
	one := summarize([]time.Duration{7 * time.Microsecond})
	if one.P50us != 7 || one.P99us != 7 {
		t.Errorf("one sample: %+v", one)
	}
	if (summarize(nil) != latencyResult{}) {
		t.Errorf("no samples: %+v", summarize(nil))
	}
}

// localAddrs turns a server's ports into 127.0.0.1 addresses: the peers
// run here against the host side's servers over loopback.
func localAddrs(s *tcpServer) []string {
	var out []string
	for _, p := range s.ports() {
		out = append(out, net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	}
	return out
}

func newEcho(t *testing.T, n int) *tcpServer {
	t.Helper()
	s, err := listenTCP(n, echoOneByte)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestPingPongOverLoopback(t *testing.T) {
	s := newEcho(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := pingPong(ctx, localAddrs(s)[0], 10, 200)
	if err != nil {
		t.Fatal(err)
	}
	if r.Samples != 200 || r.P50us <= 0 || r.P50us > r.P99us {
		t.Errorf("result %+v", r)
	}
}

func TestPingPongErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := pingPong(ctx, "127.0.0.1:1", 0, 0); err == nil {
		t.Error("count 0 accepted")
	}
	free, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pingPong(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(free)), 0, 1); err == nil {
		t.Error("connecting to a closed port succeeded")
	}
	// A server that closes at once: the round trip fails, not hangs.
	s, err := listenTCP(1, func(net.Conn) {})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if _, err := pingPong(ctx, localAddrs(s)[0], 0, 5); err == nil {
		t.Error("round trips against a closing server succeeded")
	}
}

func TestConnRateOverLoopback(t *testing.T) {
	s := newEcho(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := connRate(ctx, localAddrs(s), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.Conns == 0 || r.Errors != 0 || r.Seconds < 0.2 || r.rate() <= 0 {
		t.Errorf("result %+v", r)
	}
}

func TestConnRateGivesUp(t *testing.T) {
	free, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := connRate(ctx, []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(free))}, 20*time.Second)
	if err == nil || r.Errors != maxConnErrors || r.FirstError == "" {
		t.Errorf("against a closed port: %+v, %v", r, err)
	}
	if _, err := connRate(ctx, []string{""}, time.Second); err == nil {
		t.Error("no address accepted")
	}
}

func TestHoldIdleOverLoopback(t *testing.T) {
	h, err := newHoldServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- holdIdle(ctx, localAddrs(h.tcpServer)[0], 50, stdinR, stdoutW)
		stdoutW.Close()
	}()
	var opened struct {
		Open int `json:"open"`
	}
	if err := json.NewDecoder(stdoutR).Decode(&opened); err != nil || opened.Open != 50 {
		t.Fatalf("peer said %+v, %v", opened, err)
	}
	if err := h.waitFor(ctx, 50); err != nil {
		t.Fatal(err)
	}
	stdinW.Close() // the harness closing the peer's stdin ends it
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	if err := h.waitFor(short, 51); err == nil {
		t.Error("waitFor(51) succeeded with 50 connections")
	}
}

func TestRunPeer(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runPeer([]string{"mtu", "-iface", "lo"}, nil, &out, &errb); code != 0 {
		t.Fatalf("peer mtu: exit %d: %s", code, errb.String())
	}
	var v struct {
		MTU int `json:"mtu"`
	}
	if err := json.Unmarshal(out.Bytes(), &v); err != nil || v.MTU <= 0 {
		t.Errorf("peer mtu printed %q", out.String())
	}

	s := newEcho(t, 2)
	out.Reset()
	if code := runPeer([]string{"connrate", "-addrs", strings.Join(localAddrs(s), ","), "-duration", "100ms"}, nil, &out, &errb); code != 0 {
		t.Fatalf("peer connrate: exit %d: %s", code, errb.String())
	}
	var cr connRateResult
	if err := json.Unmarshal(out.Bytes(), &cr); err != nil || cr.Conns == 0 {
		t.Errorf("peer connrate printed %q", out.String())
	}

	for _, args := range [][]string{nil, {"bogus"}, {"latency", "-nope"}} {
		if code := runPeer(args, nil, io.Discard, io.Discard); code == 0 {
			t.Errorf("runPeer(%q) succeeded", args)
		}
	}
}
