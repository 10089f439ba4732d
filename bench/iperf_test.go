package main

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseIperf(t *testing.T) {
	tests := []struct {
		file        string
		wantBytes   int64
		wantBPS     float64
		wantRetrans int64
	}{
		// Real iperf3 3.12 --json reports, taken over loopback.
		{"iperf3-single.json", 2479816651, 19831493027.975067, 15},
		{"iperf3-parallel4.json", 2860711777, 22876863746.593815, 1},
		{"iperf3-reverse.json", 2561408918, 20490922998.30903, 20},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile("testdata/" + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			r, err := parseIperf(data)
			if err != nil {
				t.Fatalf("parseIperf: %v", err)
			}
			if r.bytes != tt.wantBytes || r.bitsPerSecond != tt.wantBPS {
				t.Errorf("got %d bytes at %v bit/s, want %d at %v", r.bytes, r.bitsPerSecond, tt.wantBytes, tt.wantBPS)
			}
			if r.gbps() != tt.wantBPS/1e9 {
				t.Errorf("gbps() = %v, want %v", r.gbps(), tt.wantBPS/1e9)
			}
			if r.retransmits != tt.wantRetrans {
				t.Errorf("retransmits = %d, want %d from end.sum_sent", r.retransmits, tt.wantRetrans)
			}
			if r.seconds <= 0 {
				t.Errorf("seconds = %v, want > 0", r.seconds)
			}
		})
	}
}

func TestParseIperfErrors(t *testing.T) {
	refused, err := os.ReadFile("testdata/iperf3-refused.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, data, want string
	}{
		{"iperf3 error", string(refused), "unable to connect to server: Connection refused"},
		{"not JSON", "iperf3: error - the server is busy", "parse iperf3 JSON"},
		{"empty", "", "parse iperf3 JSON"},
		{"no end", `{"start":{},"intervals":[],"end":{}}`, "no received bytes"},
		{"zero bytes", `{"end":{"sum_received":{"seconds":10,"bytes":0,"bits_per_second":0}}}`, "no received bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseIperf([]byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("parseIperf error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestIperfClientArgs(t *testing.T) {
	tests := []struct {
		name    string
		d       time.Duration
		streams int
		reverse bool
		want    []string
	}{
		{"single", 10 * time.Second, 1, false,
			[]string{"iperf3", "--client", "10.0.2.2", "--port", "5201", "--time", "10", "--json", "--connect-timeout", "5000"}},
		{"four streams, whole seconds", 2500 * time.Millisecond, 4, false,
			[]string{"iperf3", "--client", "10.0.2.2", "--port", "5201", "--time", "2", "--json", "--connect-timeout", "5000", "--parallel", "4"}},
		{"reverse, at least a second", 100 * time.Millisecond, 1, true,
			[]string{"iperf3", "--client", "10.0.2.2", "--port", "5201", "--time", "1", "--json", "--connect-timeout", "5000", "--reverse"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := iperfClientArgs("10.0.2.2", 5201, tt.d, tt.streams, tt.reverse)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}
