// Command slirprun runs a rootless container with slirp networking:
//
//	slirprun [OPTIONS] [--rootfs DIR | --image PATH[:TAG]] [--] CMD [ARGS...]
//	slirprun ps [-a] | logs ID | stop [-t SECONDS] ID | rm [-f] ID | port ID
//
// The work happens in package launcher; this file only parses the command
// line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/slirp-dev/slirp/internal/buildinfo"
	"github.com/slirp-dev/slirp/runtime/idmap"
	"github.com/slirp-dev/slirp/runtime/launcher"
	"github.com/slirp-dev/slirp/runtime/spec"
	"github.com/slirp-dev/slirp/runtime/state"
)

func main() {
	// Hidden roles (the container's init and helpers) come first, before
	// anything else runs.
	if code, ok := launcher.Role(os.Args); ok {
		os.Exit(code)
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `Usage:
  slirprun [OPTIONS] [--rootfs DIR | --image PATH[:TAG]] [--] CMD [ARGS...]
  slirprun ps [-a]            list containers
  slirprun logs ID            print a detached container's output
  slirprun stop [-t SEC] ID   stop a container (SIGTERM, then SIGKILL)
  slirprun rm [-f] ID         remove an exited container
  slirprun port ID            list a container's published ports

Without --rootfs or --image the container sees the host's root filesystem,
read-only. Run options:
`

func run(args []string, stdin, stdout, stderr *os.File) int {
	if len(args) > 0 {
		switch args[0] {
		case "run":
			return runContainer(args[1:], stdin, stdout, stderr)
		case "ps", "logs", "stop", "rm", "port":
			return subcommand(args[0], args[1:], stdout, stderr)
		}
	}
	return runContainer(args, stdin, stdout, stderr)
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

var combinedShort = regexp.MustCompile(`^-[itd]{2,3}$`)

// expandShort turns -it, -dt and friends into separate flags.
func expandShort(args []string) []string {
	var out []string
	for i, a := range args {
		if a == "--" || !strings.HasPrefix(a, "-") {
			return append(out, args[i:]...)
		}
		if combinedShort.MatchString(a) {
			for _, c := range a[1:] {
				out = append(out, "-"+string(c))
			}
			continue
		}
		out = append(out, a)
	}
	return out
}

func runContainer(args []string, stdin, stdout, stderr *os.File) int {
	fs := flag.NewFlagSet("slirprun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var (
		o                                launcher.Options
		envs, envFiles, vols, pubs, secs listFlag
		capAdd, capDrop                  listFlag
		userns, logLevel                 string
		interactive, tty, detach, ipv6   bool
	)
	fs.StringVar(&o.Rootfs, "rootfs", "", "use `DIR` as the container's root filesystem")
	fs.StringVar(&o.Image, "image", "", "run the OCI image layout or skopeo dir: folder `PATH[:TAG]`")
	fs.BoolVar(&o.ReadOnly, "read-only", false, "mount the root filesystem read-only (tmpfs on /tmp, /run, /var/tmp)")
	fs.StringVar(&o.Name, "name", "", "container `NAME`")
	fs.Var(&envs, "e", "set environment variable `KEY=VAL` (KEY alone copies it from here)")
	fs.Var(&envs, "env", "same as -e")
	fs.Var(&envFiles, "env-file", "read environment variables from `FILE`")
	fs.StringVar(&o.Workdir, "w", "", "working `DIR` inside the container")
	fs.StringVar(&o.Workdir, "workdir", "", "same as -w")
	fs.StringVar(&o.User, "u", "", "run as `UID[:GID]` (or names from the container's /etc/passwd)")
	fs.StringVar(&o.User, "user", "", "same as -u")
	fs.StringVar(&o.Hostname, "hostname", "", "container host name (default: the container id)")
	fs.Var(&vols, "v", "bind mount `SRC:DST[:ro]`")
	fs.Var(&vols, "volume", "same as -v")
	fs.Var(&pubs, "p", "publish `[IP:]HOST:CONTAINER[/tcp|udp]`")
	fs.Var(&pubs, "publish", "same as -p")
	fs.StringVar(&o.Network, "network", "slirp", "network: slirp or none")
	fs.BoolVar(&ipv6, "6", false, "enable IPv6 in the network (fd00::/64)")
	fs.BoolVar(&ipv6, "ipv6", false, "same as -6")
	fs.BoolVar(&o.AllowHostLoopback, "allow-host-loopback", false, "let the container reach the host's 127.0.0.1 as 10.0.2.2 (host.containers.internal)")
	fs.StringVar(&o.SlirpBinary, "slirp-binary", "", "network daemon to run (default: slirp next to slirprun, or in PATH; env "+"SLIRPRUN_SLIRP)")
	fs.StringVar(&userns, "userns", "single", "user namespace mapping: single (you as root) or subuid (your /etc/subuid ranges)")
	fs.BoolVar(&tty, "t", false, "allocate a pseudo-terminal")
	fs.BoolVar(&tty, "tty", false, "same as -t")
	fs.BoolVar(&interactive, "i", false, "keep stdin open (always the case; accepted for compatibility)")
	fs.BoolVar(&detach, "d", false, "run detached; print the container id")
	fs.BoolVar(&detach, "detach", false, "same as -d")
	fs.BoolVar(&o.Remove, "rm", false, "remove a detached container's state when it exits")
	fs.BoolVar(&o.Init, "init", false, "run an init as PID 1 that forwards signals and reaps zombies")
	fs.StringVar(&o.Pod, "pod", "", "run in pod `NAME` (created by its first container): shared network, ipc and uts")
	fs.Var(&capAdd, "cap-add", "add a capability")
	fs.Var(&capDrop, "cap-drop", "drop a capability (ALL drops every one)")
	fs.Var(&secs, "security-opt", "no-new-privileges=false or seccomp=unconfined")
	fs.Func("entrypoint", "replace the image's entrypoint with `CMD`", func(s string) error { o.Entrypoint = &s; return nil })
	fs.StringVar(&o.StateRoot, "state-dir", "", "state directory (default $"+state.EnvDir+", $XDG_RUNTIME_DIR/slirprun or /tmp/slirprun-UID)")
	fs.StringVar(&o.CacheRoot, "cache-dir", "", "layer cache directory (default $"+launcher.EnvCache+", $XDG_CACHE_HOME/slirprun or ~/.cache/slirprun)")
	fs.StringVar(&logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	version := fs.Bool("version", false, "print slirprun's version and exit")
	if err := fs.Parse(expandShort(args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 125
	}
	if *version {
		fmt.Fprint(stdout, buildinfo.Text("slirprun"))
		return 0
	}
	_ = interactive
	o.TTY, o.Detach, o.IPv6 = tty, detach, ipv6
	o.Args = fs.Args()
	o.CapAdd, o.CapDrop = capAdd, capDrop
	log, err := newLogger(logLevel, stderr)
	if err != nil {
		return failf(stderr, err)
	}
	o.LogLevel = levelOf(logLevel)
	if o.UserNS, err = idmap.ParseMode(userns); err != nil {
		return failf(stderr, err)
	}
	for _, s := range secs {
		switch s {
		case "no-new-privileges=false":
			o.NoNewPrivsOff = true
		case "no-new-privileges", "no-new-privileges=true":
		case "seccomp=unconfined":
			o.SeccompOff = true
		default:
			return failf(stderr, fmt.Errorf("--security-opt %q: use no-new-privileges=false or seccomp=unconfined", s))
		}
	}
	for _, f := range envFiles {
		fh, err := os.Open(f)
		if err != nil {
			return failf(stderr, fmt.Errorf("--env-file: %w", err))
		}
		kv, err := spec.ParseEnvFile(fh, os.LookupEnv)
		fh.Close()
		if err != nil {
			return failf(stderr, fmt.Errorf("--env-file %s: %w", f, err))
		}
		o.Env = append(o.Env, kv...)
	}
	for _, e := range envs {
		kv, ok, err := spec.ParseEnv(e, os.LookupEnv)
		if err != nil {
			return failf(stderr, err)
		}
		if ok {
			o.Env = append(o.Env, kv)
		}
	}
	for _, v := range vols {
		src, rest, _ := strings.Cut(v, ":")
		if src != "" && !filepath.IsAbs(src) {
			abs, err := filepath.Abs(src)
			if err != nil {
				return failf(stderr, err)
			}
			v = abs + ":" + rest
		}
		vol, err := spec.ParseVolume(v)
		if err != nil {
			return failf(stderr, err)
		}
		o.Volumes = append(o.Volumes, vol)
	}
	for _, p := range pubs {
		pub, err := spec.ParsePublish(p)
		if err != nil {
			return failf(stderr, err)
		}
		o.Publish = append(o.Publish, pub)
	}
	if o.Detach {
		if o.StateRoot == "" {
			o.StateRoot = state.DefaultRoot()
		}
		o.ID = state.NewID()
	}
	code, err := launcher.Run(context.Background(), o, launcher.Stdio{In: stdin, Out: stdout, Err: stderr}, log)
	if err != nil {
		fmt.Fprintf(stderr, "slirprun: %v\n", err)
		return code
	}
	if o.Detach {
		fmt.Fprintln(stdout, o.ID)
	}
	return code
}

func levelOf(s string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(s))
	return l
}

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func failf(w io.Writer, err error) int {
	fmt.Fprintf(w, "slirprun: %v\n", err)
	return 125
}

func subcommand(name string, args []string, stdout, stderr *os.File) int {
	fs := flag.NewFlagSet("slirprun "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateRoot := fs.String("state-dir", "", "state directory")
	all := fs.Bool("a", false, "ps: also list exited containers")
	force := fs.Bool("f", false, "rm: stop a running container first")
	timeout := fs.Int("t", 10, "stop, rm -f: seconds to wait before SIGKILL")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 125
	}
	if *stateRoot == "" {
		*stateRoot = state.DefaultRoot()
	}
	wait := time.Duration(*timeout) * time.Second
	var err error
	if name == "ps" {
		err = launcher.Ps(*stateRoot, *all, stdout)
	} else {
		if fs.NArg() != 1 {
			return failf(stderr, fmt.Errorf("%s needs exactly one container id or name", name))
		}
		id := fs.Arg(0)
		switch name {
		case "logs":
			err = launcher.Logs(*stateRoot, id, stdout)
		case "stop":
			err = launcher.Stop(*stateRoot, id, wait)
		case "rm":
			err = launcher.Rm(*stateRoot, id, *force, wait)
		case "port":
			err = launcher.Port(context.Background(), *stateRoot, id, stdout)
		}
	}
	if err != nil {
		return failf(stderr, err)
	}
	return 0
}
