package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/slirp-dev/slirp/internal/buildinfo"
	"github.com/slirp-dev/slirp/netem"
	"github.com/slirp-dev/slirp/portfwd"
	"github.com/slirp-dev/slirp/portfwd/api"
	"github.com/slirp-dev/slirp/portfwd/client"
)

// envSocket names the default API socket.
const envSocket = "SLIRP_API_SOCKET"

// callTimeout bounds each API call.
const callTimeout = 30 * time.Second

const usage = `Usage: slirpctl [--api-socket PATH] [--json] COMMAND [ARGS]

Manage a running slirp daemon (slirp --api-socket PATH): its port forwards,
its live connections and the test rig's impairments.

Commands:
  add [--mode=auto|fast|preserve] SPEC...   publish ports
  ls                                        list the forwards
  rm ID...                                  remove forwards (their open connections run on)
  stats                                     per-forward and stack counters
  conns                                     live connections and UDP flows, out of the guest and in through forwards
  info                                      the daemon and its network
  netem show                                the impairments in force
  netem set NETEM...                        replace them, e.g. netem set delay=50ms loss=1%
  netem clear                               remove them all
  partition on|off                          stage an outage: drop everything both ways, or heal it

SPEC is [HOSTADDR:]HOSTPORT:[GUESTADDR:]GUESTPORT[/tcp|/udp]:
  8080:80                 host 0.0.0.0:8080 to guest port 80 (TCP)
  127.0.0.1:5353:53/udp   host 127.0.0.1:5353 to guest port 53 (UDP)
  [::1]:8080:80           IPv6 host address, in brackets
  8000-8010:8000-8010     a range (same length on both sides)

NETEM words: delay=50ms jitter=10ms loss=1% duplicate=1% reorder=25%
corrupt=0.1% rate=10mbit, each for both directions or prefixed egress: (to
the guest) or ingress: (from the guest); proto=tcp|udp|icmp port=N dst=PREFIX
limit them to some packets; blackhole=PREFIX drops everything to and from
PREFIX; partition drops everything.

Modes: auto (default) takes the fast kernel path for clients on the host's
loopback and preserves the client's address for the others; fast and
preserve force one path.

Options:
  --api-socket PATH   the daemon's API socket (default $SLIRP_API_SOCKET)
  --json              print JSON instead of tables
  --version           print slirpctl's version and exit
`

// usageError is a command line mistake: usage goes to stderr, exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// run runs slirpctl with args (without the program name) and returns the
// exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	err := runErr(ctx, args, getenv, stdout)
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "slirpctl: %s\n\n%s", ue.msg, usage)
		return 2
	}
	fmt.Fprintf(stderr, "slirpctl: %s\n", err)
	return 1
}

// options are the global options.
type options struct {
	socket string
	json   bool
}

func runErr(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var o options
	fs := newFlagSet("slirpctl")
	fs.StringVar(&o.socket, "api-socket", getenv(envSocket), "")
	fs.BoolVar(&o.json, "json", false, "")
	version := fs.Bool("version", false, "")
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if *version {
		_, err := io.WriteString(stdout, buildinfo.Text("slirpctl"))
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return &usageError{"no command given"}
	}
	cmd, cmdArgs := rest[0], rest[1:]
	switch cmd {
	case "help":
		return flag.ErrHelp
	case "add", "ls", "list", "rm", "remove", "stats", "info", "conns", "netem", "partition":
	default:
		return &usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
	c := commandFlags(cmd, &o)
	var mode string
	if cmd == "add" {
		c.StringVar(&mode, "mode", "auto", "")
	}
	cmdArgs, err := parseInterleaved(c, cmdArgs)
	if err != nil {
		return flagError(err)
	}
	if o.socket == "" {
		return &usageError{"no API socket: give --api-socket PATH or set " + envSocket}
	}
	cl := client.New(o.socket)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	switch cmd {
	case "add":
		return add(ctx, cl, o, mode, cmdArgs, stdout)
	case "ls", "list":
		if len(cmdArgs) > 0 {
			return &usageError{cmd + " takes no arguments"}
		}
		ports, err := cl.Ports(ctx)
		if err != nil {
			return err
		}
		return printPorts(stdout, o.json, ports)
	case "rm", "remove":
		return remove(ctx, cl, o, cmdArgs, stdout)
	case "stats":
		if len(cmdArgs) > 0 {
			return &usageError{cmd + " takes no arguments"}
		}
		st, err := cl.Stats(ctx)
		if err != nil {
			return err
		}
		return printStats(stdout, o.json, st)
	case "info":
		if len(cmdArgs) > 0 {
			return &usageError{cmd + " takes no arguments"}
		}
		info, err := cl.Info(ctx)
		if err != nil {
			return err
		}
		return printInfo(stdout, o.json, info)
	case "conns":
		if len(cmdArgs) > 0 {
			return &usageError{cmd + " takes no arguments"}
		}
		flows, err := cl.Conns(ctx)
		if err != nil {
			return err
		}
		return printConns(stdout, o.json, flows, time.Now())
	case "netem":
		return netemCmd(ctx, cl, o, cmdArgs, stdout)
	case "partition":
		return partition(ctx, cl, o, cmdArgs, stdout)
	}
	return nil
}

// netemCmd runs netem show|set|clear.
func netemCmd(ctx context.Context, cl *client.Client, o options, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return &usageError{"netem needs show, set NETEM... or clear"}
	}
	var n api.Netem
	var err error
	switch args[0] {
	case "show":
		if len(args) > 1 {
			return &usageError{"netem show takes no arguments"}
		}
		n, err = cl.Netem(ctx)
	case "set":
		if len(args) < 2 {
			return &usageError{"netem set needs impairments, e.g. netem set delay=50ms loss=1%"}
		}
		spec := strings.Join(args[1:], " ")
		if _, perr := netem.Parse(spec); perr != nil {
			return &usageError{perr.Error()}
		}
		n, err = cl.SetNetem(ctx, spec)
	case "clear":
		if len(args) > 1 {
			return &usageError{"netem clear takes no arguments"}
		}
		n, err = cl.SetNetem(ctx, "none")
	default:
		return &usageError{fmt.Sprintf("unknown netem command %q (show, set, clear)", args[0])}
	}
	if err != nil {
		return err
	}
	return printNetem(stdout, o.json, n)
}

// partition turns a partition on or off, keeping the other impairments.
func partition(ctx context.Context, cl *client.Client, o options, args []string, stdout io.Writer) error {
	if len(args) != 1 || (args[0] != "on" && args[0] != "off") {
		return &usageError{"partition takes on or off"}
	}
	cur, err := cl.Netem(ctx)
	if err != nil {
		return err
	}
	spec, err := netem.Parse(cur.Spec)
	if err != nil {
		return fmt.Errorf("the daemon's impairments %q: %w", cur.Spec, err)
	}
	spec.Partition = args[0] == "on"
	n, err := cl.SetNetem(ctx, spec.String())
	if err != nil {
		return err
	}
	return printNetem(stdout, o.json, n)
}

func printNetem(w io.Writer, asJSON bool, n api.Netem) error {
	if asJSON {
		return writeJSON(w, n)
	}
	_, err := fmt.Fprintln(w, n.Spec)
	return err
}

// printConns prints the flows as a table: protocol, guest and destination
// addresses, the host address, bytes each way, and age.
func printConns(w io.Writer, asJSON bool, conns []api.Conn, now time.Time) error {
	if asJSON {
		if conns == nil {
			conns = []api.Conn{}
		}
		return writeJSON(w, conns)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DIR\tPROTO\tGUEST\tDESTINATION\tHOST\tTO-HOST\tTO-GUEST\tAGE")
	for _, c := range conns {
		dest := c.Dest
		if c.Direction == "in" {
			// Incoming: the guest is the destination, reached through a
			// forward from the client on the host.
			dest = fmt.Sprintf("forward %d (%s)", c.Forward, c.Path)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", c.Direction, c.Proto, c.Guest, dest, c.Host,
			c.ToHost, c.ToGuest, now.Sub(c.Started).Truncate(time.Second))
	}
	return tw.Flush()
}

// flagError makes a flag parsing error a usage error (-h stays help).
func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return &usageError{err.Error()}
}

// newFlagSet returns a flag set that reports errors instead of printing.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// commandFlags are the flags every command takes after its name (so that
// `slirpctl ls --json` works as well as `slirpctl --json ls`).
func commandFlags(cmd string, o *options) *flag.FlagSet {
	fs := newFlagSet(cmd)
	fs.StringVar(&o.socket, "api-socket", o.socket, "")
	fs.BoolVar(&o.json, "json", o.json, "")
	return fs
}

// parseInterleaved parses fs's flags wherever they appear among the
// positional arguments (`slirpctl add 8080:80 --json`), and returns the
// positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// parseAdd turns add's arguments into port objects.
func parseAdd(mode string, args []string) ([]api.PortSpec, error) {
	if len(args) == 0 {
		return nil, &usageError{"add needs at least one SPEC, e.g. 8080:80"}
	}
	m, err := portfwd.ParseMode(mode)
	if err != nil {
		return nil, &usageError{err.Error()}
	}
	var out []api.PortSpec
	for _, a := range args {
		s, err := portfwd.ParseSpec(a)
		if err != nil {
			return nil, &usageError{err.Error()}
		}
		s.Mode = m
		out = append(out, api.FromSpec(s))
	}
	return out, nil
}

func add(ctx context.Context, cl *client.Client, o options, mode string, args []string, stdout io.Writer) error {
	specs, err := parseAdd(mode, args)
	if err != nil {
		return err
	}
	var added []api.PortStatus
	var errs []error
	for i, p := range specs {
		st, err := cl.AddPort(ctx, p)
		if err != nil {
			errs = append(errs, fmt.Errorf("add %s: %w", args[i], err))
			continue
		}
		added = append(added, st)
	}
	if len(added) > 0 || len(errs) == 0 {
		if err := printPorts(stdout, o.json, added); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// parseIDs reads rm's arguments.
func parseIDs(args []string) ([]int, error) {
	if len(args) == 0 {
		return nil, &usageError{"rm needs at least one ID (see slirpctl ls)"}
	}
	ids := make([]int, 0, len(args))
	for _, a := range args {
		id, err := strconv.Atoi(a)
		if err != nil || id < 1 {
			return nil, &usageError{fmt.Sprintf("%q is not a forward ID; IDs are the numbers slirpctl ls shows", a)}
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func remove(ctx context.Context, cl *client.Client, o options, args []string, stdout io.Writer) error {
	ids, err := parseIDs(args)
	if err != nil {
		return err
	}
	removed := []int{}
	var errs []error
	for _, id := range ids {
		if err := cl.RemovePort(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("rm %d: %w", id, err))
			continue
		}
		removed = append(removed, id)
	}
	if o.json {
		if err := writeJSON(stdout, map[string][]int{"removed": removed}); err != nil {
			return err
		}
	} else {
		for _, id := range removed {
			fmt.Fprintf(stdout, "removed %d\n", id)
		}
	}
	return errors.Join(errs...)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// endpoint renders ADDR:PORT or ADDR:FIRST-LAST.
func endpoint(addr string, port, count int) string {
	if a, err := netip.ParseAddr(addr); err == nil && a.Is6() {
		addr = "[" + addr + "]"
	}
	if addr == "" {
		addr = "*"
	}
	if count > 1 {
		return fmt.Sprintf("%s:%d-%d", addr, port, port+count-1)
	}
	return fmt.Sprintf("%s:%d", addr, port)
}

func printPorts(w io.Writer, asJSON bool, ports []api.PortStatus) error {
	if asJSON {
		if ports == nil {
			ports = []api.PortStatus{}
		}
		return writeJSON(w, ports)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPROTO\tHOST\tGUEST\tMODE")
	for _, p := range ports {
		s := p.Spec
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", p.ID, s.Proto, endpoint(s.ParentIP, s.ParentPort, s.Count),
			endpoint(s.ChildIP, s.ChildPort, s.Count), modeOrAuto(s.Mode))
	}
	return tw.Flush()
}

func modeOrAuto(m string) string {
	if m == "" {
		return string(portfwd.ModeAuto)
	}
	return m
}

func printStats(w io.Writer, asJSON bool, st api.Stats) error {
	if asJSON {
		return writeJSON(w, st)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPROTO\tHOST\tGUEST\tCONNS\tACTIVE\tFAST\tPRESERVE\tTO-GUEST\tTO-HOST\tFAILED\tDROPPED\tERRORS")
	for _, p := range st.Ports {
		s := p.Spec
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", p.ID, s.Proto,
			endpoint(s.ParentIP, s.ParentPort, s.Count), endpoint(s.ChildIP, s.ChildPort, s.Count),
			p.Connections, p.Active, p.Fast, p.Preserve, p.BytesToGuest, p.BytesToHost, p.Failed, p.Dropped, p.Errors)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	stack, ok := st.Stack.(map[string]any)
	if !ok || len(stack) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nSTACK")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, k := range slices.Sorted(maps.Keys(stack)) {
		fmt.Fprintf(tw, "%s\t%s\n", k, formatValue(stack[k]))
	}
	return tw.Flush()
}

// formatValue prints JSON numbers as integers when they are.
func formatValue(v any) string {
	if f, ok := v.(float64); ok && f == float64(int64(f)) {
		return strconv.FormatInt(int64(f), 10)
	}
	return fmt.Sprint(v)
}

func printInfo(w io.Writer, asJSON bool, info api.Info) error {
	if asJSON {
		return writeJSON(w, info)
	}
	var paths []string
	if info.FastPath {
		paths = append(paths, "fast")
	}
	if info.PreservePath {
		paths = append(paths, "preserve")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, row := range [][2]string{
		{"API version", info.APIVersion},
		{"Version", info.Version},
		{"Network", info.Network},
		{"Gateway", info.Gateway},
		{"DNS", info.DNS},
		{"Guest IP", info.GuestIP},
		{"MTU", strconv.Itoa(info.MTU)},
		{"Host loopback", strconv.FormatBool(info.HostLoopback)},
		{"Data paths", strings.Join(paths, ", ")},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}
