package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFile(t *testing.T) {
	toml := writeConfig(t, "slirp.toml", `
mtu = 65520
configure = true
disable-host-loopback = true
enable-ipv6 = false
cidr = "10.0.135.128/25"
log-level = "debug"
`)
	yaml := writeConfig(t, "slirp.yaml", `
mtu: 65520
configure: true
disable-host-loopback: true
enable-ipv6: false
cidr: 10.0.135.128/25
log-level: debug
`)
	for _, path := range []string{toml, yaml} {
		t.Run(filepath.Ext(path), func(t *testing.T) {
			cfg, err := Parse("slirp", []string{"--config-file", path, "1", "tap0"})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.MTU != 65520 || !cfg.Configure || !cfg.DisableHostLoopback || cfg.EnableIPv6 ||
				cfg.CIDR.String() != "10.0.135.128/25" || cfg.LogLevel.String() != "DEBUG" {
				t.Fatalf("config from %s: %+v", path, cfg)
			}
			// The command line wins over the file.
			cfg, err = Parse("slirp", []string{"--config-file=" + path, "--mtu=1400", "1", "tap0"})
			if err != nil || cfg.MTU != 1400 {
				t.Fatalf("--mtu after the file: mtu %d, err %v", cfg.MTU, err)
			}
		})
	}
}

func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"a.toml", "bogus = 1\n", `"bogus" is not an option`},
		{"a.toml", "mtu = true\n", "mtu needs a value"},
		{"a.toml", "configure = \"yes\"\n", "configure is a flag"},
		{"a.toml", "mtu = 1.5\n", "not a whole number"},
		{"a.toml", "mtu = [1]\n", "is not allowed"},
		{"a.toml", "mtu = \n", "config file"},
		{"a.json", "{}", "name it .toml, .yaml or .yml"},
		{"a.toml", "mtu = 0\n", "MTU must be a positive integer"},
	} {
		_, err := Parse("slirp", []string{"--config-file", writeConfig(t, tc.name, tc.body), "1", "tap0"})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %q: err %v, want it to mention %q", tc.name, tc.body, err, tc.want)
		}
	}
	if _, err := Parse("slirp", []string{"--config-file", "/nonexistent/x.toml", "1", "tap0"}); err == nil {
		t.Error("a missing config file was accepted")
	}
}

func TestObservabilityFlags(t *testing.T) {
	cfg, err := Parse("slirp", []string{"--log-format=JSON", "--pcap=/tmp/x.pcap", "--metrics", "127.0.0.1:9100", "1", "tap0"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LogFormat != "json" || cfg.PcapFile != "/tmp/x.pcap" || cfg.MetricsAddr != "127.0.0.1:9100" {
		t.Fatalf("%+v", cfg)
	}
	for _, args := range [][]string{{"--log-format=xml", "1", "tap0"}, {"--pcap=", "1", "tap0"}, {"--metrics=", "1", "tap0"}} {
		if _, err := Parse("slirp", args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func FuzzConfigFile(f *testing.F) {
	f.Add("mtu = 65520\nconfigure = true\n", true)
	f.Add("mtu: 1500\ncidr: 10.0.2.0/24\n", false)
	f.Fuzz(func(t *testing.T, body string, isTOML bool) {
		name := "f.yaml"
		if isTOML {
			name = "f.toml"
		}
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Parse("slirp", []string{"--config-file", p, "1", "tap0"})
		if err != nil && err.Error() == "" {
			t.Fatal("empty error")
		}
	})
}
