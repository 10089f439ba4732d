package main

import (
	"math"
	"os"
	"strings"
	"testing"
)

func TestTargetMet(t *testing.T) {
	atLeast := target{against: pasta, atLeast: true, factor: 1.5}
	atMost := target{against: pasta, factor: 0.57}
	tests := []struct {
		t     target
		ratio float64
		want  bool
	}{
		{atLeast, 1.5, true},
		{atLeast, 1.49, false},
		{atLeast, 3, true},
		{atMost, 0.57, true},
		{atMost, 0.58, false},
		{atMost, 0.1, true},
		{atLeast, math.NaN(), false},
		{atMost, math.Inf(1), false},
	}
	for _, tt := range tests {
		if got := tt.t.met(tt.ratio); got != tt.want {
			t.Errorf("%v met(%v) = %v, want %v", tt.t, tt.ratio, got, tt.want)
		}
	}
	if got := atLeast.String(); got != "≥ 1.5 × pasta" {
		t.Errorf("String() = %q", got)
	}
	if got := (target{against: pasta, factor: 1.18}).String(); got != "≤ 1.18 × pasta" {
		t.Errorf("String() = %q", got)
	}
}

// TestTargetsCoverTheIssue checks that every row of the issue's table has
// a target at MTU 65520, and the MTU 1500 goal is against slirp4netns.
func TestTargetsCoverTheIssue(t *testing.T) {
	for _, id := range []string{"g2h", "h2g", "fwd", "g2h4", "latency", "connrate", "rss", "ready"} {
		if _, ok := targetFor(id, 65520); !ok {
			t.Errorf("no target for %s at MTU 65520", id)
		}
		if _, ok := measureByID(id); !ok {
			t.Errorf("no measure %s", id)
		}
	}
	if tg, ok := targetFor("g2h", 1500); !ok || tg.against != slirp4netns || tg.factor != 3 || !tg.atLeast {
		t.Errorf("MTU 1500 target = %+v, %v", tg, ok)
	}
	if _, ok := targetFor("latency", 1500); ok {
		t.Errorf("latency has a target at MTU 1500; the issue sets none")
	}
	if _, ok := targetFor("g2h", 9000); ok {
		t.Errorf("target at an MTU the issue does not mention")
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Errorf("median(nil) is not NaN")
	}
	in := []float64{3, 1, 2}
	median(in)
	if in[0] != 3 {
		t.Errorf("median reordered its input: %v", in)
	}
}

func TestResultsRowsAndVerdicts(t *testing.T) {
	r := newResults()
	// guest → host: ours 9, pasta 6 (1.5×: pass), slirp4netns 4.5.
	r.add(65520, ours, "g2h", 9)
	r.add(65520, pasta, "g2h", 6)
	r.add(65520, slirp4netns, "g2h", 4.5)
	// latency: ours 120 µs vs pasta 111 (ratio 1.08 > 1: fail).
	r.add(65520, ours, "latency", 120)
	r.add(65520, pasta, "latency", 111)
	r.add(65520, slirp4netns, "latency", 169)
	// port forward: ours failed, so the row is not measured.
	r.fail(65520, ours, "fwd", "API missing")
	r.add(65520, pasta, "fwd", 9.9)
	// two rounds of start-up times: the median is used.
	for _, v := range []float64{10, 30, 12} {
		r.add(65520, ours, "ready", v)
	}
	r.add(65520, pasta, "ready", 17)
	// an informational row.
	r.add(65520, ours, "cpu-g2h", 0.8)
	// MTU 1500: 3 × slirp4netns.
	r.add(1500, ours, "g2h", 3.4)
	r.add(1500, slirp4netns, "g2h", 1.1)

	if got := r.mtus(); len(got) != 2 || got[0] != 65520 || got[1] != 1500 {
		t.Fatalf("mtus() = %v", got)
	}
	rows := r.rows(65520)
	byID := map[string]row{}
	var order []string
	for _, rw := range rows {
		byID[rw.m.id] = rw
		order = append(order, rw.m.id)
	}
	if strings.Join(order, ",") != "g2h,fwd,latency,ready,cpu-g2h" {
		t.Errorf("row order %v, want the measures' order and only measured rows", order)
	}
	check := func(id string, want verdict, ratioPasta string) {
		t.Helper()
		rw := byID[id]
		if rw.verdict != want {
			t.Errorf("%s verdict %v, want %v", id, rw.verdict, want)
		}
		if rw.ratios[pasta] != ratioPasta {
			t.Errorf("%s ratio to pasta %q, want %q", id, rw.ratios[pasta], ratioPasta)
		}
	}
	check("g2h", passed, "1.50")
	check("latency", missed, "1.08")
	check("fwd", unmeasured, "–")
	check("ready", passed, "0.71") // median 12 / 17
	check("cpu-g2h", noTarget, "–")
	if v := byID["fwd"].values[ours]; v.ok || v.why != "n/a (API missing)" {
		t.Errorf("fwd value %+v, want n/a (API missing)", v)
	}
	if v := byID["ready"].values[ours]; v.n != 3 || v.v != 12 {
		t.Errorf("ready value %+v, want the median 12 of 3", v)
	}
	if v := byID["g2h"].values[slirp4netns]; byID["g2h"].ratios[slirp4netns] != "2.00" || v.v != 4.5 {
		t.Errorf("g2h vs slirp4netns: %q of %v", byID["g2h"].ratios[slirp4netns], v)
	}
	if rw := r.rows(1500); len(rw) != 1 || rw[0].verdict != passed || rw[0].ratios[pasta] != "–" {
		t.Errorf("MTU 1500 rows %+v", rw)
	}
	if p, f, m := r.tally(); p != 3 || f != 1 || m != 1 {
		t.Errorf("tally = %d passed, %d failed, %d missing; want 3, 1, 1", p, f, m)
	}
}

func TestWriteTable(t *testing.T) {
	r := newResults()
	r.add(65520, ours, "g2h", 9.123)
	r.add(65520, pasta, "g2h", 6)
	r.fail(65520, slirp4netns, "g2h", "failed")
	r.add(65520, ours, "connrate", 3900.4)
	r.add(65520, pasta, "connrate", 2600)
	var b strings.Builder
	if err := writeTable(&b, r, 65520); err != nil {
		t.Fatal(err)
	}
	want := `| MTU 65520 | unit | slirp | slirp4netns | pasta | slirp ÷ pasta | slirp ÷ slirp4netns | target | result |
|---|---|--:|--:|--:|--:|--:|---|---|
| guest → host TCP (iperf3 to the gateway) | Gbit/s | 9.12 | n/a (failed) | 6.00 | 1.52 | – | ≥ 1.5 × pasta | PASS |
| new connections per second (connect, 1 byte each way, close) | conn/s | 3900 | not run | 2600 | 1.50 | – | ≥ 1.5 × pasta | PASS |
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestBusy(t *testing.T) {
	tests := []struct {
		load  string
		nproc int
		want  bool
	}{
		{"0.50 2.00 3.00", 2, false},
		{"1.01 0.10 0.10", 2, true},
		{"11.21 6.21 4.25", 2, true},
		{"unknown", 2, false},
		{"", 2, false},
		{"3.0", 0, false},
	}
	for _, tt := range tests {
		if got := busy(tt.load, tt.nproc); got != tt.want {
			t.Errorf("busy(%q, %d) = %v, want %v", tt.load, tt.nproc, got, tt.want)
		}
	}
}

func TestLinkage(t *testing.T) {
	for path, want := range map[string]string{
		"/bin/busybox":       "statically linked", // busybox-static, which make deps installs
		"/usr/bin/dash":      "dynamically linked",
		"/nonexistent/slirp": "linkage unknown",
	} {
		if _, err := os.Stat(path); err != nil && want != "linkage unknown" {
			t.Logf("skip %s: %v", path, err)
			continue
		}
		if got := linkage(path); got != want {
			t.Errorf("linkage(%s) = %q, want %q", path, got, want)
		}
	}
}
