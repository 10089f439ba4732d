package clients

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/cli"
	"github.com/slirp-dev/slirp/portfwd"
	"github.com/slirp-dev/slirp/portfwd/api"
	"golang.org/x/sys/unix"
)

// A fixture is what one client sent slirp4netns in one scenario, captured
// by the end-to-end tests and kept in testdata/NAME.json. The unit tests
// below feed the command lines to slirp's parser and the API requests to
// slirp's API server, without podman or rootlesskit installed. The
// end-to-end tests compare every fresh capture with its fixture, so a
// client that changes what it sends is noticed; run them with
// SLIRP_CLIENTS_UPDATE_FIXTURES=1 to rewrite the fixtures.
type fixture struct {
	// Client is the client and its version, e.g. "podman 4.3.1".
	Client string `json:"client"`
	// Scenario is what was run.
	Scenario string `json:"scenario"`
	// Calls are the command lines (without argv[0]) in order, with
	// placeholders for per-run values.
	Calls [][]string `json:"calls"`
	// API are the API connections in order.
	API []fixtureAPI `json:"api,omitempty"`
}

type fixtureAPI struct {
	// Request is the exact bytes the client sent, {{HOST_PORT}} aside.
	Request string `json:"request"`
	// Reply is slirp4netns' reply: the reference for ours.
	Reply string `json:"reply"`
	// HalfClosed says the client shut down writing after the request.
	HalfClosed bool `json:"halfClosed"`
}

const updateFixturesEnv = "SLIRP_CLIENTS_UPDATE_FIXTURES"

// checkFixture compares what the client sent slirp4netns in this run
// with testdata/NAME.json, or rewrites the file when updating.
func checkFixture(t *testing.T, name, client, scenario string, ref capture) {
	t.Helper()
	got := fixture{Client: client, Scenario: scenario, Calls: ref.calls}
	for _, a := range ref.api {
		got.API = append(got.API, fixtureAPI{Request: a.Request, Reply: a.Reply, HalfClosed: a.HalfClosed})
	}
	path := filepath.Join("testdata", name+".json")
	if os.Getenv(updateFixturesEnv) != "" {
		b, err := json.MarshalIndent(got, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
		return
	}
	want, err := readFixture(path)
	if err != nil {
		t.Errorf("%v (run with %s=1 to capture it)", err, updateFixturesEnv)
		return
	}
	if !slices.EqualFunc(got.Calls, want.Calls, slices.Equal) {
		t.Errorf("%s (%s) ran slirp4netns differently from %s (%s):\n got  %q\n want %q\n(if the client changed on purpose, run with %s=1)",
			client, scenario, path, want.Client, got.Calls, want.Calls, updateFixturesEnv)
	}
	if !slices.Equal(got.API, want.API) {
		t.Errorf("%s (%s) used the API differently from %s (%s):\n got  %+v\n want %+v\n(if the client changed on purpose, run with %s=1)",
			client, scenario, path, want.Client, got.API, want.API, updateFixturesEnv)
	}
}

func readFixture(path string) (fixture, error) {
	var f fixture
	b, err := os.ReadFile(path)
	if err != nil {
		return f, fmt.Errorf("fixture %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("fixture %s: %w", path, err)
	}
	return f, nil
}

// wantConfig is what a fixture's (non --help) command line means,
// written down from slirp4netns' manual and the clients' sources
// (docs/compatibility.md), not from our parser.
type wantConfig struct {
	configure, disableHostLoopback, ipv6, sandbox, seccomp, api bool
	mtu, readyFD, exitFD                                        int
	netnsType                                                   cli.NetnsType
	cidr                                                        string
	outbound                                                    string
	userns                                                      bool
}

// fixtureWants has an entry for every file in testdata/ (checked).
var fixtureWants = map[string]wantConfig{
	// podman 4.3 (containers/common 0.50): -c -e 3 -r 4, path mode,
	// sandbox and seccomp always, IPv6 on unless enable_ipv6=false.
	"podman-default":             {configure: true, disableHostLoopback: true, ipv6: true, sandbox: true, seccomp: true, mtu: 65520, readyFD: 4, exitFD: 3, netnsType: cli.NetnsTypePath},
	"podman-allow-host-loopback": {configure: true, ipv6: true, sandbox: true, seccomp: true, mtu: 65520, readyFD: 4, exitFD: 3, netnsType: cli.NetnsTypePath},
	"podman-ipv6-off":            {configure: true, sandbox: true, seccomp: true, mtu: 65520, readyFD: 4, exitFD: 3, netnsType: cli.NetnsTypePath},
	"podman-mtu":                 {configure: true, disableHostLoopback: true, ipv6: true, sandbox: true, seccomp: true, mtu: 1500, readyFD: 4, exitFD: 3, netnsType: cli.NetnsTypePath},
	"podman-cidr":                {configure: true, ipv6: true, sandbox: true, seccomp: true, mtu: 65520, readyFD: 4, exitFD: 3, netnsType: cli.NetnsTypePath, cidr: "10.0.3.0/24"},
	"podman-outbound-addr":       {configure: true, ipv6: true, sandbox: true, seccomp: true, mtu: 65520, readyFD: 4, exitFD: 3, netnsType: cli.NetnsTypePath, outbound: "127.0.0.2"},
	"podman-port-slirp4netns":    {configure: true, disableHostLoopback: true, ipv6: true, sandbox: true, seccomp: true, api: true, mtu: 65520, readyFD: 4, exitFD: 3, netnsType: cli.NetnsTypePath},
	"podman-port-rootlessport":   {configure: true, disableHostLoopback: true, ipv6: true, sandbox: true, seccomp: true, mtu: 65520, readyFD: 4, exitFD: 3, netnsType: cli.NetnsTypePath},
	"podman-rootless-default":    {configure: true, disableHostLoopback: true, ipv6: true, sandbox: true, seccomp: true, mtu: 65520, readyFD: 4, exitFD: 3, netnsType: cli.NetnsTypePath},
	"podman-rootless-port":       {configure: true, disableHostLoopback: true, ipv6: true, sandbox: true, seccomp: true, api: true, mtu: 65520, readyFD: 4, exitFD: 3, netnsType: cli.NetnsTypePath},
	// rootlesskit 1.1: pid mode, no -c (it made and configured the tap),
	// ready fd 3, no exit fd.
	"rootlesskit-slirp4netns-driver": {disableHostLoopback: true, api: true, mtu: 65520, readyFD: 3, exitFD: -1, netnsType: cli.NetnsTypePID},
	"rootlesskit-builtin-driver":     {mtu: 65520, readyFD: 3, exitFD: -1, netnsType: cli.NetnsTypePID},
	// slirprun: as podman, plus --userns-path, without sandbox/seccomp.
	"slirprun-default": {configure: true, disableHostLoopback: true, api: true, mtu: 65520, readyFD: 3, exitFD: 4, netnsType: cli.NetnsTypePath, cidr: "10.0.2.0/24", userns: true},
	"slirprun-port":    {configure: true, disableHostLoopback: true, api: true, mtu: 65520, readyFD: 3, exitFD: 4, netnsType: cli.NetnsTypePath, cidr: "10.0.2.0/24", userns: true},
}

// fixtureNames lists testdata/*.json and checks it against fixtureWants.
func fixtureNames(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		name := strings.TrimSuffix(filepath.Base(p), ".json")
		if _, ok := fixtureWants[name]; !ok {
			t.Errorf("%s has no entry in fixtureWants", p)
		}
		names = append(names, name)
	}
	for name := range fixtureWants {
		if !slices.Contains(names, name) {
			t.Errorf("fixtureWants[%q] has no testdata/%s.json: capture it with %s=1 (as root, with podman, rootlesskit and slirp4netns installed)",
				name, name, updateFixturesEnv)
		}
	}
	return names
}

// TestFixtureCommandLines: every command line the clients were seen to
// send parses, with slirp's parser, to what slirp4netns makes of it.
func TestFixtureCommandLines(t *testing.T) {
	dir := t.TempDir()
	values := map[string]string{
		phNetnsPath: "/proc/self/ns/net",
		phUsernsPat: "/proc/self/ns/user",
		phAPISocket: filepath.Join(dir, "api.sock"),
		phPID:       strconv.Itoa(os.Getpid()),
	}
	for _, name := range fixtureNames(t) {
		t.Run(name, func(t *testing.T) {
			f, err := readFixture(filepath.Join("testdata", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			want := fixtureWants[name]
			runs := 0
			for _, call := range f.Calls {
				args := make([]string, len(call))
				for i, a := range call {
					for ph, v := range values {
						a = strings.ReplaceAll(a, ph, v)
					}
					args[i] = a
				}
				cfg, err := cli.Parse("slirp4netns", args)
				if err != nil {
					t.Errorf("%q: %v", call, err)
					continue
				}
				if cfg.Help {
					// Feature detection: podman and rootlesskit read --help.
					if !slices.Equal(call, []string{"--help"}) {
						t.Errorf("%q: unexpected help request", call)
					}
					continue
				}
				runs++
				checkWant(t, call, cfg, want)
			}
			if runs != 1 {
				t.Errorf("%d daemon runs in the fixture, want 1: %q", runs, f.Calls)
			}
		})
	}
}

func checkWant(t *testing.T, call []string, c *cli.Config, w wantConfig) {
	t.Helper()
	cidr := w.cidr
	if cidr == "" {
		cidr = cli.DefaultCIDR.String()
	}
	outbound := ""
	if c.OutboundAddr.IsValid() {
		outbound = c.OutboundAddr.String()
	}
	got := fmt.Sprintf("configure=%v disableHostLoopback=%v ipv6=%v sandbox=%v seccomp=%v api=%v mtu=%d ready=%d exit=%d netns=%s cidr=%s outbound=%q userns=%v tap=%s",
		c.Configure, c.DisableHostLoopback, c.EnableIPv6, c.EnableSandbox, c.EnableSeccomp, c.APISocket != "",
		c.MTU, c.ReadyFD, c.ExitFD, c.NetnsType, c.CIDR, outbound, c.UsernsPath != "", c.TapName)
	want := fmt.Sprintf("configure=%v disableHostLoopback=%v ipv6=%v sandbox=%v seccomp=%v api=%v mtu=%d ready=%d exit=%d netns=%s cidr=%s outbound=%q userns=%v tap=%s",
		w.configure, w.disableHostLoopback, w.ipv6, w.sandbox, w.seccomp, w.api,
		w.mtu, w.readyFD, w.exitFD, w.netnsType, cidr, w.outbound, w.userns, "tap0")
	if got != want {
		t.Errorf("%q parsed as\n %s\nwant\n %s", call, got, want)
	}
}

// hostSockets opens sockets in this process's own network namespace: the
// "namespace" of the API fixture test is the host.
type hostSockets struct{}

func (hostSockets) Socket(_ context.Context, domain, typ, proto int) (*os.File, error) {
	fd, err := unix.Socket(domain, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	return os.NewFile(uintptr(fd), "socket"), nil
}

// TestFixtureAPIRequests: the API requests the clients were seen to send,
// byte for byte (host ports aside), get from slirp's API server the reply
// slirp4netns gave them, and each client can read that reply its way.
func TestFixtureAPIRequests(t *testing.T) {
	for _, name := range fixtureNames(t) {
		f, err := readFixture(filepath.Join("testdata", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(f.API) == 0 {
			continue
		}
		t.Run(name, func(t *testing.T) {
			sock := serveAPI(t)
			// Each fixture publishes one port: the same in every request
			// and reply.
			port := strconv.Itoa(freePort(t))
			for i, a := range f.API {
				req := strings.ReplaceAll(a.Request, phHostPort, port)
				want := strings.ReplaceAll(a.Reply, phHostPort, port)
				reply, err := callAPI(sock, req, a.HalfClosed)
				if err != nil {
					t.Fatalf("request %d %q: %v", i, req, err)
				}
				if why, ok := documentedReplyDifference(req, string(reply), want); ok {
					t.Logf("request %d: documented difference: %s", i, why)
				} else if string(reply) != want {
					t.Errorf("request %d %q: slirp replied %q, slirp4netns %q", i, a.Request, reply, want)
				}
				if err := clientAccepts(f.Client, a.Request, reply); err != nil {
					t.Errorf("request %d %q: %s would fail on slirp's reply %q: %v", i, a.Request, f.Client, reply, err)
				}
			}
		})
	}
}

// serveAPI runs slirp's API server on a socket in a temporary directory.
func serveAPI(t *testing.T) string {
	t.Helper()
	m, err := portfwd.New(portfwd.Config{Opener: hostSockets{}, Guest: netip.MustParseAddr("10.0.2.100")})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{Manager: m})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, api.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	t.Cleanup(func() {
		srv.Close()
		m.Close()
		wg.Wait()
	})
	return sock
}

// callAPI sends req as the clients do (one write, then a half-close when
// they half-closed) and reads the reply to EOF.
func callAPI(sock, req string, halfClose bool) ([]byte, error) {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return nil, err
	}
	if halfClose {
		if err := c.(*net.UnixConn).CloseWrite(); err != nil {
			return nil, err
		}
	}
	return io.ReadAll(c)
}

// clientAccepts applies the client's own reading of a reply (from its
// source): podman does one Read of up to 2048 bytes and fails on an
// "error" key; rootlesskit json.Unmarshals the whole reply and needs
// return.id to be a JSON number after add_hostfwd.
func clientAccepts(client, req string, reply []byte) error {
	var r struct {
		Return map[string]any `json:"return"`
		Error  map[string]any `json:"error"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return fmt.Errorf("not one JSON value: %w", err)
	}
	if r.Error != nil {
		return fmt.Errorf("error reply: %v", r.Error)
	}
	switch {
	case strings.HasPrefix(client, "podman"):
		if len(reply) > 2048 {
			return fmt.Errorf("%d bytes; podman reads 2048", len(reply))
		}
	case strings.HasPrefix(client, "rootlesskit"):
		if strings.Contains(req, `"add_hostfwd"`) {
			if _, ok := r.Return["id"].(float64); !ok {
				return fmt.Errorf("return.id is %v, not a number", r.Return["id"])
			}
		}
	}
	return nil
}
