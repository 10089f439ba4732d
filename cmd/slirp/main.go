// Command slirp gives an unprivileged network namespace its network: it
// creates a tap device inside the namespace and serves it with a user-mode
// TCP/IP stack whose connections become ordinary host sockets. It is a
// drop-in replacement for slirp4netns (install it under that name) and takes
// the same command line:
//
//	slirp [OPTION]... PID|PATH [TAPNAME]
//
// See slirp --help and docs/ in the source tree.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/slirp-dev/slirp"
	"github.com/slirp-dev/slirp/internal/cli"
	"github.com/slirp-dev/slirp/internal/sandbox"
)

func main() {
	// In the helper that slirp starts inside the target namespaces this
	// runs the helper and never returns.
	slirp.HelperMain()
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(daemonProcs(runtime.GOMAXPROCS(0)))
	}
	// In the image that --enable-sandbox re-executed into the sandbox,
	// the daemon goes on from what the first image handed over.
	if st, resumed, err := sandbox.Resumed(); resumed {
		if err != nil {
			fmt.Fprintln(os.Stderr, "slirp:", err)
			os.Exit(1)
		}
		os.Exit(runResumed(st, os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[0], os.Args[1:], os.Stdout, os.Stderr))
}

// daemonProcs is how many Ps (threads running Go code at once) the
// daemon takes when GOMAXPROCS is not set, given the runtime's default
// (the CPUs it may use, after any cgroup limit): half, and at least one.
// The daemon is the middle of a pipeline whose two ends, the guest's
// programs and the host's, run on the same CPUs; every P it takes can
// park a thread on a CPU they need, and on a small machine the hand-offs
// between its threads cost more than running them in parallel gains.
// Measured on the 2-vCPU benchmark machine, one P against two: host →
// guest +22%, connections per second +30%, CPU per GB 10-30% lower, idle
// RSS 0.6 MiB lower, 4-stream guest → host 15% lower (still about twice
// pasta's); see docs/architecture.md.
func daemonProcs(defaultProcs int) int {
	return max(1, defaultProcs/2)
}

// run parses the command line and runs the daemon; it returns the exit
// status.
func run(argv0 string, args []string, stdout, stderr io.Writer) int {
	cfg, err := cli.Parse(argv0, args)
	if err != nil {
		var uerr *cli.UsageError
		if errors.As(err, &uerr) {
			_ = uerr.Print(stdout, stderr)
			return uerr.ExitCode
		}
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stdout, w)
	}
	switch {
	case cfg.Help:
		fmt.Fprint(stdout, cli.Usage(argv0))
		return 0
	case cfg.Version:
		fmt.Fprint(stdout, cli.VersionText())
		return 0
	}
	return runDaemon(cfg, stdout, stderr)
}
