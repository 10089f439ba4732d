package clients

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// A probe is a shell script that runs inside a container (or a launcher's
// namespace) with busybox and reports, in sections, what the network looks
// like from there; checkProbe then compares the report with what the
// scenario promises.

// probeWant is what a scenario promises inside the container.
type probeWant struct {
	// addr is the guest's IPv4 address with prefix, gw the gateway, dns
	// the DNS forwarder's address.
	addr, gw, dns string
	mtu           int
	// hostLoopback says the host's 127.0.0.1 is reachable as gw.
	hostLoopback bool
	// ipv6: the guest has a global address in fd00::/64 and, with
	// hostLoopback, reaches the host's ::1 as fd00::2.
	ipv6 bool
	// noIPv6: the guest has no global IPv6 address at all.
	noIPv6 bool
	// outbound is the source address the host service must see.
	outbound string
}

// defaultWant is slirp4netns' default network with podman's MTU.
func defaultWant() probeWant {
	return probeWant{addr: "10.0.2.100/24", gw: "10.0.2.2", dns: "10.0.2.3", mtu: 65520}
}

// probeScript prints the sections checkProbe reads.
func (w *world) probeScript(want probeWant) string {
	var b strings.Builder
	if want.ipv6 {
		// SLAAC (slirp4netns) takes a router advertisement; wait up to
		// 10 s for a usable (non-tentative) address, and its routes.
		b.WriteString(`i=0; while [ $i -lt 50 ] && ! ip -6 addr show dev tap0 scope global | grep 'inet6 fd00:' | grep -qv tentative; do sleep 0.2; i=$((i+1)); done
`)
	}
	fmt.Fprintf(&b, "echo '=== addr'; ip -o -4 addr show dev tap0\n")
	fmt.Fprintf(&b, "echo '=== link'; ip -o link show dev tap0\n")
	fmt.Fprintf(&b, "echo '=== route'; ip -4 route\n")
	fmt.Fprintf(&b, "echo '=== route6'; ip -6 route\n")
	fmt.Fprintf(&b, "echo '=== dns'; nslookup %s %s 2>&1\n", w.dns.name, want.dns)
	fmt.Fprintf(&b, "echo '=== web'; timeout 10 wget -q -O- http://%s:%d/ 2>&1; echo \" exit=$?\"\n", want.gw, w.web.port)
	if want.ipv6 || want.noIPv6 {
		b.WriteString("echo '=== addr6'; ip -o -6 addr show dev tap0 scope global\n")
	}
	if want.ipv6 && w.web6 != nil {
		fmt.Fprintf(&b, "echo '=== web6'; timeout 10 wget -q -O- http://[fd00::2]:%d/ 2>&1; echo \" exit=$?\"\n", w.web6.port)
	}
	fmt.Fprintf(&b, "echo '=== end'\n")
	return b.String()
}

// sections splits a probe's output at its "=== name" lines.
func sections(out string) map[string]string {
	m := map[string]string{}
	name := ""
	for _, line := range strings.SplitAfter(out, "\n") {
		if n, ok := strings.CutPrefix(strings.TrimSpace(line), "=== "); ok {
			name = n
			m[name] = ""
			continue
		}
		if name != "" {
			m[name] += line
		}
	}
	return m
}

// checkProbe compares a probe's output with want. dnsBefore is the test
// DNS server's count for the name before the probe ran.
func (w *world) checkProbe(t *testing.T, out string, want probeWant, dnsBefore int) {
	t.Helper()
	s := sections(out)
	if _, ok := s["end"]; !ok {
		t.Fatalf("the probe did not finish:\n%s", out)
	}
	if !strings.Contains(s["addr"], "inet "+want.addr+" ") {
		t.Errorf("tap0 has no %s:\n%s", want.addr, s["addr"])
	}
	if !strings.Contains(s["link"], fmt.Sprintf(" mtu %d ", want.mtu)) {
		t.Errorf("tap0's MTU is not %d:\n%s", want.mtu, s["link"])
	}
	if !strings.Contains(s["route"], "default via "+want.gw+" ") {
		t.Errorf("no default route via %s:\n%s", want.gw, s["route"])
	}
	if !strings.Contains(s["dns"], "Address: "+w.dns.a4.String()) {
		t.Errorf("%s did not resolve through %s to the test DNS server's %s:\n%s", w.dns.name, want.dns, w.dns.a4, s["dns"])
	}
	if w.dns.asked(w.dns.name) <= dnsBefore {
		t.Errorf("the test DNS server got no query for %s", w.dns.name)
	}
	clients := w.web.takeClients()
	if want.hostLoopback {
		if !strings.Contains(s["web"], w.web.token) {
			t.Errorf("the host's 127.0.0.1:%d was not reachable as %s:\n%s", w.web.port, want.gw, s["web"])
		}
		src := "127.0.0.1"
		if want.outbound != "" {
			src = want.outbound
		}
		for _, c := range clients {
			if !strings.HasPrefix(c, src+":") {
				t.Errorf("the host service saw a connection from %s, want %s", c, src)
			}
		}
	} else {
		if strings.Contains(s["web"], w.web.token) || len(clients) > 0 {
			t.Errorf("the host's loopback was reachable although host loopback is disabled (clients %v):\n%s", clients, s["web"])
		}
		// slirp4netns answers the SYN with ICMP net-unreachable; busybox
		// wget prints strerror(ENETUNREACH).
		if !strings.Contains(s["web"], "Network is unreachable") {
			t.Errorf("connecting to the gateway should fail with \"Network is unreachable\":\n%s", s["web"])
		}
	}
	if want.ipv6 && !strings.Contains(s["addr6"], "inet6 fd00:") {
		t.Errorf("no global IPv6 address in fd00::/64:\n%s", s["addr6"])
	}
	if want.noIPv6 && strings.Contains(s["addr6"], "inet6") {
		t.Errorf("a global IPv6 address although IPv6 is off:\n%s", s["addr6"])
	}
	if want.ipv6 && want.hostLoopback && w.web6 != nil {
		if !strings.Contains(s["web6"], w.web6.token) {
			t.Errorf("the host's [::1]:%d was not reachable as [fd00::2]:\n%s", w.web6.port, s["web6"])
		}
		for _, c := range w.web6.takeClients() {
			if !strings.HasPrefix(c, "[::1]:") {
				t.Errorf("the host's IPv6 service saw a connection from %s, want [::1]", c)
			}
		}
	}
}

var (
	macRE       = regexp.MustCompile(`\b([0-9a-f]{2}:){5}[0-9a-f]{2}\b`)
	linkLocalRE = regexp.MustCompile(`fe80::[0-9a-f:]+/64`)
	expiresRE   = regexp.MustCompile(`\s+expires \d+sec`)
)

// normalizeProbe removes what differs from run to run whatever the
// daemon: random MAC addresses (and the link-local addresses made from
// them), DAD state, route lifetimes, spacing, and the order of lines
// (nslookup prints the A and AAAA answers in the order they arrive).
func normalizeProbe(s string) string {
	s = macRE.ReplaceAllString(s, "MAC")
	s = linkLocalRE.ReplaceAllString(s, "fe80::EUI64/64")
	s = expiresRE.ReplaceAllString(s, "")
	var lines []string
	for line := range strings.Lines(s) {
		f := slices.DeleteFunc(strings.Fields(line), func(w string) bool { return w == "tentative" })
		if len(f) > 0 {
			lines = append(lines, strings.Join(f, " "))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// compareProbes reports every section of the probe where the container
// saw something different on slirp than on slirp4netns. Differences that
// docs/compatibility.md lists as intended are logged with the reason;
// any other fails the test.
func compareProbes(t *testing.T, scenario, ours, ref string) {
	t.Helper()
	o, r := sections(ours), sections(ref)
	names := map[string]bool{}
	for n := range o {
		names[n] = true
	}
	for n := range r {
		names[n] = true
	}
	for _, n := range slices.Sorted(maps.Keys(names)) {
		on, rn := normalizeProbe(o[n]), normalizeProbe(r[n])
		if on == rn {
			continue
		}
		if why, ok := documentedProbeDifference(n, on, rn); ok {
			t.Logf("%s: documented difference in %q: %s", scenario, n, why)
			continue
		}
		t.Errorf("%s: the container saw %q differently\non slirp:\n%s\non slirp4netns:\n%s", scenario, n, o[n], r[n])
	}
}

// documentedProbeDifference says whether a section differs only in a way
// docs/compatibility.md lists, and why.
func documentedProbeDifference(section, ours, ref string) (string, bool) {
	switch section {
	case "link":
		// slirp4netns -c sets the tap's flags to exactly UP|RUNNING with
		// SIOCSIFFLAGS, which clears the kernel's default MULTICAST;
		// slirp brings it up over netlink and leaves the other flags.
		if strings.Replace(ours, "<BROADCAST,MULTICAST,UP,", "<BROADCAST,UP,", 1) == ref {
			return "tap0 keeps IFF_MULTICAST with slirp -c (slirp4netns' SIOCSIFFLAGS clears it)", true
		}
	case "addr6":
		// With -c and --enable-ipv6, slirp gives the guest fd00::100/64
		// at once, as -c does 10.0.2.100; slirp4netns leaves it to SLAAC
		// after its first router advertisement: fd00::<EUI-64>, dynamic.
		if strings.Contains(ours, "inet6 fd00::100/64") && strings.Contains(ref, "inet6 fd00:") && strings.Contains(ref, "dynamic") {
			return "with -c, slirp configures fd00::100/64 statically; slirp4netns leaves the guest to SLAAC (fd00::<EUI-64>)", true
		}
	}
	return "", false
}
