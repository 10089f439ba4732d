package clients

import (
	"os"
	"slices"
	"strconv"
	"testing"
)

// Unit tests of the capture helpers, which the fixtures depend on.

func TestRenameArg(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"--api-socket", "/r/a.net", "tap0"}, []string{"--api-socket", "/r/.w", "tap0"}},
		{[]string{"--api-socket=/r/a.net"}, []string{"--api-socket=/r/.w"}},
		{[]string{"--api=/r/a.net"}, []string{"--api=/r/.w"}},
		{[]string{"-a/r/a.net"}, []string{"-a/r/.w"}},
		{[]string{"-a", "/r/a.net"}, []string{"-a", "/r/.w"}},
		{[]string{"--cidr=10.0.2.0/24", "/r/a.netx"}, []string{"--cidr=10.0.2.0/24", "/r/a.netx"}},
	} {
		if got := renameArg(tc.in, "/r/a.net", "/r/.w"); !slices.Equal(got, tc.want) {
			t.Errorf("renameArg(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNormalizeArgv(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	for _, tc := range []struct{ in, want []string }{
		{
			[]string{"--mtu=65520", "-c", "-e", "3", "-r", "4", "--api-socket", "/tmp/x.net", "--netns-type=path", "/proc/self/ns/net", "tap0"},
			[]string{"--mtu=65520", "-c", "-e", "3", "-r", "4", "--api-socket", phAPISocket, "--netns-type=path", phNetnsPath, "tap0"},
		},
		{
			[]string{"--mtu", "65520", "-r", "3", pid, "tap0"},
			[]string{"--mtu", "65520", "-r", "3", phPID, "tap0"},
		},
		{
			[]string{"--userns-path=/proc/self/ns/user", "--netns-type=path", "/proc/self/ns/net", "tap0"},
			[]string{"--userns-path=" + phUsernsPat, "--netns-type=path", phNetnsPath, "tap0"},
		},
		// Not a valid command line (the PID does not exist, or --help):
		// left as it is.
		{[]string{"--help"}, []string{"--help"}},
	} {
		if got := normalizeArgv(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("normalizeArgv(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNormalizeHostPort(t *testing.T) {
	in := `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":38123,"guest_port":80}}`
	want := `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":{{HOST_PORT}},"guest_port":80}}`
	if got := normalizeHostPort(in); got != want {
		t.Errorf("normalizeHostPort:\n got  %s\n want %s", got, want)
	}
}

func TestDocumentedProbeDifference(t *testing.T) {
	ours := normalizeProbe("2: tap0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 65520 qdisc pfifo_fast qlen 1000\\    link/ether 72:f8:9f:19:83:87 brd ff:ff:ff:ff:ff:ff\n")
	ref := normalizeProbe("2: tap0: <BROADCAST,UP,LOWER_UP> mtu 65520 qdisc pfifo_fast qlen 1000\\    link/ether 26:91:49:ae:5f:bf brd ff:ff:ff:ff:ff:ff\n")
	if _, ok := documentedProbeDifference("link", ours, ref); !ok {
		t.Errorf("the MULTICAST flag is a documented difference:\n%s\n%s", ours, ref)
	}
	other := normalizeProbe("2: tap0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast qlen 1000\\    link/ether 72:f8:9f:19:83:87 brd ff:ff:ff:ff:ff:ff\n")
	if _, ok := documentedProbeDifference("link", other, ref); ok {
		t.Errorf("an MTU difference must not pass as documented")
	}
	if _, ok := documentedReplyDifference(`{"execute":"list_hostfwd"}`,
		`{"entries":[{"id":1}],"return":{"entries":[{"id":1}]}}`, `{"entries":[{"id":1}]}`); !ok {
		t.Errorf("list_hostfwd's extra return.entries is a documented difference")
	}
	if _, ok := documentedReplyDifference(`{"execute":"list_hostfwd"}`,
		`{"entries":[],"return":{"entries":[]}}`, `{"entries":[{"id":1}]}`); ok {
		t.Errorf("different entries must not pass as documented")
	}
}
