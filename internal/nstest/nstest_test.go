package nstest

import (
	"strings"
	"testing"
)

func TestNSNetnsHolder(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"plain", nil},
		{"userns", []Option{WithUserns()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := NewNetns(t, tc.opts...)
			out := n.Run(t, "ip", "-o", "link", "show", "lo")
			if !strings.Contains(out, "UP") {
				t.Fatalf("lo not up in new netns: %q", out)
			}
		})
	}
}

func TestNSUnprivilegedUserns(t *testing.T) {
	uid, gid := UnprivilegedUser(t)
	n := NewNetns(t, WithUserns(), AsUser(uid, gid))
	out := n.Run(t, "id", "-u")
	if strings.TrimSpace(out) != "0" {
		t.Fatalf("id -u inside userns = %q, want 0", out)
	}
}

func TestNSVeth(t *testing.T) {
	a := NewNetns(t)
	b := NewNetns(t)
	Veth(t, a, "eth0", "198.51.100.1/24", b, "eth0", "198.51.100.2/24")
	a.Run(t, "ping", "-c1", "-W2", "198.51.100.2")
}
