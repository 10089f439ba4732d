// Command bench measures slirp against slirp4netns and pasta, side by side
// in one run: for each daemon in turn it creates a fresh user+network
// namespace, starts the daemon on it, runs the same workloads (iperf3
// throughput both ways and through a port forward, 1-byte latency, new
// connections per second, memory, start-up time, CPU per GB, memory with
// idle connections) and prints one table of absolute numbers and ratios,
// with the targets checked as ratios from the same run.
//
// It needs root, iperf3, nsenter, /usr/bin/slirp4netns and /usr/bin/pasta
// (Debian packages iperf3, util-linux, slirp4netns, passt); `make bench`
// installs the missing ones and runs it. Traffic stays on the machine: the
// guest only talks to the gateway address, which every daemon maps to the
// host's loopback, and the host only to 127.0.0.1.
//
// The same binary is the guest side of the latency, connection-rate and
// idle workloads: `bench peer ...`, run inside the namespace by nsenter.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == peerCommand {
		os.Exit(runPeer(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// The workloads -only can select; "ready" and "rss" are measured in every
// pass.
var workloadNames = []string{"g2h", "h2g", "fwd", "g2h4", "latency", "connrate", "idle"}

// options are the command-line settings.
type options struct {
	iperfTime    time.Duration
	connTime     time.Duration
	settle       time.Duration
	latencyCount int
	idleConns    int
	mtus         []int
	rounds       int
	impls        []string        // in run order
	workloads    map[string]bool // selected workloads
	out          string
	slirpBinary  string
	perfDir      string
	strict       bool
	logLevel     slog.Level
}

// parseOptions parses the command line.
func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.iperfTime, "time", 10*time.Second, "length of each iperf3 run (whole seconds)")
	fs.DurationVar(&o.connTime, "conn-time", 5*time.Second, "length of the connection-rate run")
	fs.DurationVar(&o.settle, "settle", 5*time.Second, "how long each daemon sits idle after the workloads before its memory is read")
	fs.IntVar(&o.latencyCount, "latency-count", 10000, "1-byte round trips timed for the latency row")
	fs.IntVar(&o.idleConns, "idle", 1000, "idle connections held open for the idle-memory rows")
	mtus := fs.String("mtu", "65520,1500", "MTUs to run, comma-separated")
	fs.IntVar(&o.rounds, "rounds", 1, "repeat everything this many times and report medians")
	only := fs.String("only", "", "comma-separated implementations ("+strings.Join(implNames, ", ")+
		") and/or workloads ("+strings.Join(workloadNames, ", ")+") to run; empty runs all")
	fs.StringVar(&o.out, "out", "", "also write the report (Markdown) to this file, e.g. docs/benchmarks.md")
	fs.StringVar(&o.slirpBinary, "slirp", "", "our daemon's binary (default: go build ./cmd/slirp into a temporary directory)")
	fs.StringVar(&o.perfDir, "perf", "", "after the measurements, profile each daemon with perf record during one more guest → host run, writing DIR/perf-IMPL-mtuMTU.{data,txt}")
	fs.BoolVar(&o.strict, "strict", false, "exit with status 3 when a target is missed")
	level := fs.String("log-level", "info", "progress messages on stderr: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q (flags only; see -h)", fs.Args())
	}
	if err := o.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return o, fmt.Errorf("-log-level: %w", err)
	}
	var err error
	if o.mtus, err = parseMTUs(*mtus); err != nil {
		return o, err
	}
	if o.impls, o.workloads, err = parseOnly(*only); err != nil {
		return o, err
	}
	switch {
	case o.iperfTime < time.Second:
		return o, errors.New("-time must be at least 1s")
	case o.connTime <= 0:
		return o, errors.New("-conn-time must be positive")
	case o.settle < 0:
		return o, errors.New("-settle must not be negative")
	case o.latencyCount <= 0:
		return o, errors.New("-latency-count must be positive")
	case o.idleConns <= 0:
		return o, errors.New("-idle must be positive")
	case o.rounds <= 0:
		return o, errors.New("-rounds must be positive")
	}
	return o, nil
}

// parseMTUs parses "65520,1500".
func parseMTUs(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		m, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || m < 1280 || m > 65520 {
			return nil, fmt.Errorf("-mtu: %q is not an MTU between 1280 and 65520", f)
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out, nil
}

// parseOnly splits the -only list into implementations and workloads; a
// list without implementations runs all three, one without workloads runs
// all workloads.
func parseOnly(s string) ([]string, map[string]bool, error) {
	var impls []string
	workloads := map[string]bool{}
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f == "":
		case slices.Contains(implNames, f):
			if !slices.Contains(impls, f) {
				impls = append(impls, f)
			}
		case slices.Contains(workloadNames, f):
			workloads[f] = true
		default:
			return nil, nil, fmt.Errorf("-only: unknown name %q (implementations: %s; workloads: %s)",
				f, strings.Join(implNames, ", "), strings.Join(workloadNames, ", "))
		}
	}
	if len(impls) == 0 {
		impls = slices.Clone(implNames)
	} else {
		// Keep the table's order, whatever order they were given in.
		slices.SortFunc(impls, func(a, b string) int {
			return slices.Index(implNames, a) - slices.Index(implNames, b)
		})
	}
	if len(workloads) == 0 {
		for _, w := range workloadNames {
			workloads[w] = true
		}
	}
	return impls, workloads, nil
}

// run is the harness; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseOptions(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: opts.logLevel}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	b, err := newBench(ctx, opts, log)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	defer b.close()
	if err := b.runAll(ctx); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	report := b.report()
	if _, err := io.WriteString(stdout, report); err != nil {
		return 1
	}
	if opts.out != "" {
		if err := os.WriteFile(opts.out, []byte(report), 0o644); err != nil {
			fmt.Fprintln(stderr, "bench: write the report:", err)
			return 1
		}
		log.Info("report written", "file", opts.out)
	}
	if _, failed, _ := b.res.tally(); failed > 0 && opts.strict {
		return 3
	}
	return 0
}

// checkEnvironment says what is missing, with what to do about it.
func checkEnvironment(opts options, impls map[string]*implementation) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root (sudo make bench): the harness creates namespaces and starts the daemons as root")
	}
	var missing []string
	for _, tool := range []string{"iperf3", "nsenter", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	for _, name := range opts.impls {
		if name == ours && opts.slirpBinary == "" {
			continue // built later
		}
		if _, err := os.Stat(impls[name].binary); err != nil {
			missing = append(missing, impls[name].binary)
		}
	}
	if opts.perfDir != "" {
		if _, err := exec.LookPath("perf"); err != nil {
			missing = append(missing, "perf")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: `make bench` installs them (Debian packages iperf3, util-linux, iproute2, slirp4netns, passt; linux-perf for -perf)",
			strings.Join(missing, ", "))
	}
	return nil
}

// buildOurs builds ./cmd/slirp into dir.
func buildOurs(ctx context.Context, dir string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("find go to build ./cmd/slirp (or pass -slirp PATH): %w", err)
	}
	out := filepath.Join(dir, "slirp")
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", out, "github.com/slirp-dev/slirp/cmd/slirp")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/slirp (run from the source tree, or pass -slirp PATH): %w: %s", err, msg)
	}
	return out, nil
}

// becomeSubreaper makes orphaned descendants (the daemonized pasta) this
// process's children, so they can be waited for.
func becomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}
	return nil
}

// raiseFileLimit lifts the soft open-file limit to the hard one for this
// process and the daemons it starts (1,000 idle connections need 1,000
// host sockets in each daemon). Go raises its own soft limit at start but
// hands children the original one unless Setrlimit is called.
func raiseFileLimit() error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("get the open-file limit: %w", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise the open-file limit: %w", err)
	}
	return nil
}
