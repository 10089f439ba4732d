package cli

import (
	"errors"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"--disable-host-loopback\x00--mtu=65520\x00--enable-sandbox\x00--enable-seccomp\x00--cidr=10.0.2.0/24\x00--enable-ipv6\x00-c\x00-r\x003\x00-e\x004\x00--api-socket\x00/tmp/x.net\x00--netns-type=path\x00/proc/self/ns/net\x00tap0",
		"--mtu\x0065520\x00-r\x003\x00--disable-host-loopback\x001234\x00tap0",
		"-c6m1400\x00--\x00123\x00tap0\x00extra",
		"--dis\x001\x00tap0",
		"-c\x00--macaddress=aa:bb:cc:dd:ee:ff:00\x001\x00tap0",
		"--target-type=bess\x00/tmp/x.sock",
		"--netns-type=tapfd\x003",
		"--cidr=10.0.2.100/24\x001\x00tap0",
		"--outbound-addr=lo\x00--outbound-addr6=lo\x001\x00tap0",
		"-6\x00-h",
		"--log-level=warn\x00--resolv-conf=/x\x00--pid-file=/p\x001\x00tap0",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var args []string
		if s != "" {
			args = strings.Split(s, "\x00")
		}
		cfg, err := Parse("prog", args)
		if err != nil {
			var uerr *UsageError
			if !errors.As(err, &uerr) {
				t.Fatalf("Parse(%q) error %T %v, want *UsageError", args, err, err)
			}
			if cfg != nil {
				t.Fatalf("Parse(%q) returned a Config with an error", args)
			}
			if uerr.Error() == "" || uerr.ExitCode != 1 || uerr.Argv0 != "prog" {
				t.Fatalf("Parse(%q): bad error %#v", args, uerr)
			}
			if uerr.Stderr == "" && !uerr.ShowUsage {
				t.Fatalf("Parse(%q): error prints nothing", args)
			}
			return
		}
		if cfg.Help || cfg.Version {
			return
		}
		switch {
		case cfg.MTU < 1 || cfg.MTU > MaxMTU:
			t.Fatalf("Parse(%q): MTU %d", args, cfg.MTU)
		case len(cfg.TapName) > MaxTapNameLen:
			t.Fatalf("Parse(%q): TapName %q", args, cfg.TapName)
		case cfg.CIDR.Bits() < minPrefix || cfg.CIDR.Bits() > maxPrefix || cfg.CIDR.Masked() != cfg.CIDR:
			t.Fatalf("Parse(%q): CIDR %v", args, cfg.CIDR)
		case cfg.MACAddress != nil && (len(cfg.MACAddress) != 6 || !cfg.Configure):
			t.Fatalf("Parse(%q): MAC %v with Configure %v", args, cfg.MACAddress, cfg.Configure)
		case cfg.OutboundAddr.IsValid() && !cfg.OutboundAddr.Is4():
			t.Fatalf("Parse(%q): OutboundAddr %v", args, cfg.OutboundAddr)
		case cfg.OutboundAddr6.IsValid() && !cfg.OutboundAddr6.Is6():
			t.Fatalf("Parse(%q): OutboundAddr6 %v", args, cfg.OutboundAddr6)
		case cfg.ExitFD < -1 || cfg.ReadyFD < -1:
			t.Fatalf("Parse(%q): fds %d %d", args, cfg.ExitFD, cfg.ReadyFD)
		}
		switch {
		case cfg.TargetType == TargetBESS:
			if cfg.BessSocket == "" && len(args) == 0 || cfg.Configure {
				t.Fatalf("Parse(%q): bess config %+v", args, cfg)
			}
		case cfg.NetnsType == NetnsTypePID:
			if cfg.PID <= 0 {
				t.Fatalf("Parse(%q): PID %d", args, cfg.PID)
			}
		case cfg.NetnsType == NetnsTypeTapFD:
			if cfg.TapFD < 0 {
				t.Fatalf("Parse(%q): TapFD %d", args, cfg.TapFD)
			}
		case cfg.NetnsType != NetnsTypePath:
			t.Fatalf("Parse(%q): NetnsType %q", args, cfg.NetnsType)
		}
		b := Banner(cfg)
		if !strings.HasPrefix(b, "Starting slirp\n* MTU:") {
			t.Fatalf("Banner = %q", b)
		}
	})
}
