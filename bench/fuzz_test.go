package main

import (
	"os"
	"slices"
	"testing"
)

func FuzzParseIperf(f *testing.F) {
	for _, name := range []string{"iperf3-single.json", "iperf3-parallel4.json", "iperf3-reverse.json", "iperf3-refused.json"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"end":{"sum_received":{"seconds":1,"bytes":1,"bits_per_second":8}}}`))
	f.Add([]byte(`{"end":{"sum_received":{"seconds":-1,"bytes":1e30,"bits_per_second":"x"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := parseIperf(data)
		if err == nil && (r.bytes <= 0 || r.bitsPerSecond <= 0 || r.seconds <= 0) {
			t.Fatalf("accepted a report without received bytes: %+v", r)
		}
	})
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("26386 (cat) R 26382 26382 10242 0 -1 4194304 102 0 0 0 7 3 0 0 20 0 1 0 248529"))
	f.Add([]byte("42 (a) b (c)) S 1 42 42 0 -1 0 0 0 0 0 1234 567 0 0 20 0 9 0\n"))
	f.Add([]byte("1 ()) S"))
	f.Add([]byte(")("))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseStat(data)
		if err == nil && len(st.comm) > len(data) {
			t.Fatalf("command name longer than the input: %+v", st)
		}
	})
}

func FuzzParseVmRSS(f *testing.F) {
	f.Add([]byte("Name:\tslirp\nVmRSS:\t    2180 kB\n"))
	f.Add([]byte("VmRSS:\t12 MB\n"))
	f.Add([]byte("VmRSS:\t9223372036854775807 kB\n"))
	f.Add([]byte("VmRSS:"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rss, err := parseVmRSS(data)
		if err == nil && rss%1024 != 0 {
			t.Fatalf("VmRSS %d is not whole kilobytes", rss)
		}
	})
}

func FuzzHasListener(f *testing.F) {
	f.Add([]byte("  sl  local_address rem_address   st\n   0: 00000000:07E8 00000000:0000 0A 0\n"), 2024)
	f.Add([]byte("\n:07E8 x 0A"), 2024)
	f.Add([]byte(""), 0)
	f.Fuzz(func(t *testing.T, table []byte, port int) {
		_ = hasListener(table, port)
	})
}

func FuzzParseAddReply(f *testing.F) {
	f.Add([]byte(`{"return":{"id":1}}`))
	f.Add([]byte(`{"error":{"desc":"bad request: add_hostfwd: bad arguments.proto"}}`))
	f.Add([]byte(`{"return":{"id":"1"}}`))
	f.Add([]byte(`{"return":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseAddReply(data)
	})
}

func FuzzParseOnly(f *testing.F) {
	f.Add("slirp,g2h")
	f.Add(" pasta , , idle")
	f.Add("slirp4netns,slirp4netns,fwd,bogus")
	f.Fuzz(func(t *testing.T, s string) {
		impls, workloads, err := parseOnly(s)
		if err != nil {
			return
		}
		if len(impls) == 0 || len(workloads) == 0 {
			t.Fatalf("parseOnly(%q) selected nothing: %v %v", s, impls, workloads)
		}
		for _, i := range impls {
			if !slices.Contains(implNames, i) {
				t.Fatalf("unknown implementation %q", i)
			}
		}
		for w := range workloads {
			if !slices.Contains(workloadNames, w) {
				t.Fatalf("unknown workload %q", w)
			}
		}
	})
}

func FuzzParseMTUs(f *testing.F) {
	f.Add("65520,1500")
	f.Add("1280")
	f.Add("0,-1,65521")
	f.Fuzz(func(t *testing.T, s string) {
		mtus, err := parseMTUs(s)
		if err != nil {
			return
		}
		for _, m := range mtus {
			if m < 1280 || m > 65520 {
				t.Fatalf("parseMTUs(%q) accepted %d", s, m)
			}
		}
	})
}
