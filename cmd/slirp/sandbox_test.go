package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/slirp-dev/slirp/internal/cli"
	"github.com/slirp-dev/slirp/internal/sandbox"
)

// The parsed command line crosses the exec as JSON: every option must
// come back as it went.
func TestHandoffRoundTrip(t *testing.T) {
	cfg, err := cli.Parse("slirp", []string{
		"-c", "-e", "4", "-r", "3", "-m", "65520", "-6", "-a", "/run/x/api.sock",
		"--cidr=10.0.135.128/25", "--disable-host-loopback", "--userns-path=/proc/self/ns/user",
		"--enable-sandbox", "--enable-seccomp", "--outbound-addr=127.0.0.1", "--outbound-addr6=::1",
		"--disable-dns", "--macaddress=0e:d4:18:d9:38:fb", "--resolv-conf=/tmp/resolv.conf",
		"--log-level=debug", "--pid-file=/run/x/pid", "--ipv6-prefix=fd42::/64", "--log-format=json",
		"--pcap=/tmp/x.pcap", "--metrics=127.0.0.1:9100",
		"--netem=delay=50ms jitter=10ms loss=1% egress:rate=10mbit proto=tcp port=80",
		"--seed=42", "--drop-after=90s", "--blackhole=192.0.2.0/24,2001:db8::/32",
		"--netns-type=path", "/proc/self/ns/net", "tap11",
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Warnings = nil
	st := sandbox.NewState()
	if st.Data, err = encodeHandoff(handoff{Config: cfg, LinkVnetHdr: true, ExitFDClosed: true, HelperNetns: "/proc/1/ns/net"}); err != nil {
		t.Fatal(err)
	}
	h, err := decodeHandoff(st)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(h.Config, cfg) {
		t.Errorf("config after the round trip:\n got %+v\nwant %+v", h.Config, cfg)
	}
	if !h.LinkVnetHdr || !h.ExitFDClosed || h.HelperNetns != "/proc/1/ns/net" {
		t.Errorf("handoff after the round trip: %+v", h)
	}

	for _, bad := range []string{``, `{}`, `{"config":3}`, `[`} {
		if _, err := decodeHandoff(sandbox.State{Data: []byte(bad)}); err == nil {
			t.Errorf("decodeHandoff(%q) succeeded", bad)
		}
	}
}

func TestCheckSandboxable(t *testing.T) {
	for addr, ok := range map[string]bool{
		"": true, "127.0.0.1:9100": true, "[::1]:0": true, "/run/m.sock": false, "./m.sock": false,
	} {
		err := checkSandboxable(&cli.Config{MetricsAddr: addr})
		if (err == nil) != ok {
			t.Errorf("--metrics=%q: %v", addr, err)
		}
		if err != nil && !strings.Contains(err.Error(), "HOST:PORT") {
			t.Errorf("--metrics=%q: %v does not say what to do", addr, err)
		}
	}
}

// FuzzDecodeHandoff: whatever the State carries, decoding fails cleanly or
// gives a configuration that crosses again.
func FuzzDecodeHandoff(f *testing.F) {
	cfg, err := cli.Parse("slirp", []string{"-c", "--enable-sandbox", "--netem=delay=5ms", "--blackhole=192.0.2.0/24", "--netns-type=path", "/proc/self/ns/net", "tap0"})
	if err != nil {
		f.Fatal(err)
	}
	seed, err := encodeHandoff(handoff{Config: cfg, LinkVnetHdr: true, HelperNetns: "/proc/1/ns/net"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(seed))
	f.Add([]byte(`{"config":{}}`))
	f.Add([]byte(`{"config":{"CIDR":"10.0.2.0/33","LogLevel":"LOUD"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHandoff(sandbox.State{Data: b})
		if err != nil {
			return
		}
		again, err := encodeHandoff(h)
		if err != nil {
			t.Fatalf("decoded %q, which does not encode: %v", b, err)
		}
		if _, err := decodeHandoff(sandbox.State{Data: again}); err != nil {
			t.Fatalf("decoded %q and encoded it to %q, which does not decode: %v", b, again, err)
		}
	})
}
