package portfwd

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		in      string
		want    Spec
		wantErr string
	}{
		{in: "8080:80", want: Spec{Proto: TCP, HostPort: 8080, GuestPort: 80}},
		{in: "8080:80/tcp", want: Spec{Proto: TCP, HostPort: 8080, GuestPort: 80}},
		{in: "127.0.0.1:5353:53/udp", want: Spec{Proto: UDP, HostAddr: a("127.0.0.1"), HostPort: 5353, GuestPort: 53}},
		{in: "[::1]:8080:80", want: Spec{Proto: TCP, HostAddr: a("::1"), HostPort: 8080, GuestPort: 80}},
		{in: "[::]:8080:80/UDP", want: Spec{Proto: UDP, HostAddr: a("::"), HostPort: 8080, GuestPort: 80}},
		{in: "8000-8010:8000-8010", want: Spec{Proto: TCP, HostPort: 8000, GuestPort: 8000, Count: 11}},
		{in: "8000-8002:9000-9002/udp", want: Spec{Proto: UDP, HostPort: 8000, GuestPort: 9000, Count: 3}},
		{in: "0.0.0.0:8080:10.0.2.100:80", want: Spec{Proto: TCP, HostAddr: a("0.0.0.0"), HostPort: 8080, GuestAddr: a("10.0.2.100"), GuestPort: 80}},
		{in: "[::1]:8080:[fd00::100]:80", want: Spec{Proto: TCP, HostAddr: a("::1"), HostPort: 8080, GuestAddr: a("fd00::100"), GuestPort: 80}},
		{in: "65535:65535", want: Spec{Proto: TCP, HostPort: 65535, GuestPort: 65535}},

		{in: "", wantErr: "want [HOSTADDR:]HOSTPORT"},
		{in: "8080", wantErr: "want [HOSTADDR:]HOSTPORT"},
		{in: "8080:", wantErr: "missing port number"},
		{in: ":80", wantErr: "missing port number"},
		{in: ":8080:80", wantErr: "empty address"},
		{in: "1.2.3.4:8080::80", wantErr: "empty address"},
		{in: "0:80", wantErr: "out of range"},
		{in: "8080:0", wantErr: "out of range"},
		{in: "65536:80", wantErr: "out of range"},
		{in: "-1:80", wantErr: "missing port number"},
		{in: "+80:80", wantErr: "not a port number"},
		{in: "8080:80/sctp", wantErr: "unknown protocol"},
		{in: "8080:80/tcp6", wantErr: "host address chooses the family"},
		{in: "::1:8080:80", wantErr: "brackets"},
		{in: "fe80::1:8080:80", wantErr: "too many colons"},
		{in: "[127.0.0.1]:8080:80", wantErr: "without brackets"},
		{in: "[::1:8080:80", wantErr: "missing ]"},
		{in: "[::1]8080:80", wantErr: "want : after ]"},
		{in: "[fe80::1%eth0]:8080:80", wantErr: "zones"},
		{in: "localhost:8080:80", wantErr: "not an IP address"},
		{in: "8000-8010:80", wantErr: "same length"},
		{in: "8010-8000:8010-8000", wantErr: "ends before it starts"},
		{in: "65535-65535:1-1", want: Spec{Proto: TCP, HostPort: 65535, GuestPort: 1}},
		{in: "1-2000:1-2000", wantErr: "covers 1 to 1024 ports"},
		{in: "1.2.3.4:5:6:7:8", wantErr: "too many colons"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSpec(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSpec(%q) = %+v, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSpec(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseSpec(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSpecStringRoundTrip(t *testing.T) {
	for _, in := range []string{"8080:80/tcp", "127.0.0.1:5353:53/udp", "[::1]:8080:80/tcp", "8000-8010:9000-9010/udp", "[::]:1:[fd00::1]:2/tcp"} {
		s, err := ParseSpec(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.String(); got != in {
			t.Errorf("ParseSpec(%q).String() = %q", in, got)
		}
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"8080:80", "127.0.0.1:5353:53/udp", "[::1]:8080:80", "8000-8010:8000-8010",
		"0.0.0.0:1:10.0.2.100:2/tcp", "[", "[]:", "::::", "1-:2-", "8080:80/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSpec(in)
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("ParseSpec(%q) returned an invalid spec %+v: %v", in, s, err)
		}
		again, err := ParseSpec(s.String())
		if err != nil {
			t.Fatalf("ParseSpec(%q).String() = %q does not parse: %v", in, s.String(), err)
		}
		if again != s {
			t.Fatalf("round trip of %q: %+v then %+v", in, s, again)
		}
	})
}
