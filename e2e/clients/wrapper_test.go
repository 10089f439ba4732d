package clients

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/slirp-dev/slirp/internal/cli"
)

// The wrapper is what the clients run in place of slirp4netns. A small
// shell script (see writeWrapper) re-executes this test binary with
// wrapEnv naming a wrapConfig; TestMain then calls wrapMain instead of the
// tests. The wrapper
//
//   - appends the command line it was given to a log, which is how the
//     tests learn exactly what podman, rootlesskit and slirprun send;
//   - keeps the daemon away from the host's real nameserver: it prepends
//     --resolv-conf=FILE for slirp, or runs slirp4netns (which has no such
//     flag) in a private mount namespace with FILE bound over
//     /etc/resolv.conf;
//   - when the command line has --api-socket, serves that path itself,
//     hands every request to the daemon's socket (renamed) and logs the
//     request and reply bytes.
//
// Without an API socket the wrapper execs the daemon, so the client
// manages the daemon's own process. With one it stays the daemon's parent:
// it passes the ready and exit fds on under the same numbers, forwards
// signals, kills the daemon when it dies itself (as rootlesskit's
// Pdeathsig expects), and exits with the daemon's status.

// wrapEnv names the wrapConfig file in the wrapper's environment.
const wrapEnv = "SLIRP_CLIENTS_WRAP"

// wrapConfig tells the wrapper what to run and where to log.
type wrapConfig struct {
	// Target is the daemon binary.
	Target string `json:"target"`
	// Prepend goes before the client's arguments (--resolv-conf=FILE).
	Prepend []string `json:"prepend,omitempty"`
	// MountResolvConf, when set, is bound over /etc/resolv.conf in a new
	// mount namespace before Target runs (needs CAP_SYS_ADMIN over the
	// caller's mount namespace: root, or root in podman's user namespace).
	MountResolvConf string `json:"mountResolvConf,omitempty"`
	// ArgvLog gets one argvRecord per call.
	ArgvLog string `json:"argvLog"`
	// APILog, when set, gets one apiRecord per API connection.
	APILog string `json:"apiLog,omitempty"`
	// RaceLog is the GORACE log_path prefix for a daemon built with -race,
	// so that a race the clients provoke fails the test (the clients throw
	// the daemon's stderr away).
	RaceLog string `json:"raceLog,omitempty"`
}

// argvRecord is one call of the wrapper.
type argvRecord struct {
	Argv []string `json:"argv"`
	// Normalized is Argv with placeholders (normalizeArgv), made while
	// the namespace paths it names still exist.
	Normalized []string `json:"normalized"`
	UID        int      `json:"uid"`
}

// apiRecord is one API connection as the wrapper relayed it.
type apiRecord struct {
	Request string `json:"request"`
	Reply   string `json:"reply"`
	// HalfClosed says the client shut down its writing side after the
	// request (podman and rootlesskit do; slirp4netns does not need it).
	HalfClosed bool   `json:"halfClosed"`
	Err        string `json:"err,omitempty"`
}

func wrapMain(cfgPath string, args []string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "slirp test wrapper: %v\n", err)
		return 1
	}
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		return fail(err)
	}
	var cfg wrapConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fail(fmt.Errorf("%s: %w", cfgPath, err))
	}
	if err := appendJSON(cfg.ArgvLog, argvRecord{Argv: args, Normalized: normalizeArgv(args), UID: os.Getuid()}); err != nil {
		return fail(err)
	}
	env := os.Environ()
	if cfg.RaceLog != "" {
		env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "GORACE=") })
		env = append(env, raceEnv(cfg.RaceLog))
	}

	if cfg.APILog != "" {
		c, err := cli.Parse("slirp4netns", args)
		if err == nil && !c.Help && !c.Version && c.APISocket != "" {
			return proxyAndRun(cfg, env, args, c, c.APISocket)
		}
	}
	argv := command(cfg, args)
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fail(err)
	}
	return fail(syscall.Exec(path, argv, env))
}

// raceEnv is the GORACE setting for a -race binary run under a client:
// reports go to files (the clients throw stderr away), and no second of
// sleep at exit (the race runtime's default, there to let reports finish,
// makes every daemon and helper exit a second late).
func raceEnv(logPrefix string) string {
	return "GORACE=log_path=" + logPrefix + " atexit_sleep_ms=0"
}

// command is the daemon's command line: Target with Prepend and args,
// behind unshare and a bind mount when MountResolvConf is set.
func command(cfg wrapConfig, args []string) []string {
	argv := append(append([]string{cfg.Target}, cfg.Prepend...), args...)
	if cfg.MountResolvConf == "" {
		return argv
	}
	// set -e: if the bind mount fails, the daemon must not start with the
	// host's resolv.conf.
	script := `set -e; mount --bind "$0" /etc/resolv.conf; exec "$@"`
	return append([]string{"unshare", "--mount", "--propagation", "private", "--",
		"/bin/sh", "-c", script, cfg.MountResolvConf}, argv...)
}

// proxyAndRun runs the daemon on a renamed API socket and relays the
// client's socket to it, logging every request.
func proxyAndRun(cfg wrapConfig, env, args []string, c *cli.Config, api string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "slirp test wrapper: %v\n", err)
		return 1
	}
	// Short, beside the client's path, so it fits in sun_path as well as
	// the client's own path does.
	daemonSock := filepath.Join(filepath.Dir(api), fmt.Sprintf(".w%d", os.Getpid()))
	args = renameArg(args, api, daemonSock)

	_ = os.Remove(api)
	ln, err := net.Listen("unix", api)
	if err != nil {
		return fail(fmt.Errorf("listen on the client's API socket: %w", err))
	}
	var wg sync.WaitGroup
	wg.Go(func() { relayAPI(ln, daemonSock, cfg.APILog) })
	defer func() {
		ln.Close()
		wg.Wait()
		_ = os.Remove(api)
	}()

	argv := command(cfg, args)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// The ready and exit fds keep their numbers in the daemon.
	var passed []*os.File
	for _, fd := range []int{c.ReadyFD, c.ExitFD} {
		if fd < 3 {
			continue
		}
		for len(cmd.ExtraFiles) <= fd-3 {
			cmd.ExtraFiles = append(cmd.ExtraFiles, nil)
		}
		f := os.NewFile(uintptr(fd), fmt.Sprintf("fd%d", fd))
		cmd.ExtraFiles[fd-3] = f
		passed = append(passed, f)
	}
	// Pdeathsig fires when the thread that started the child ends: keep
	// this goroutine on its thread until the daemon is gone.
	runtime.LockOSThread()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	// Only the daemon may hold them now: the client waits for the ready
	// pipe's EOF and the exit pipe's hang-up.
	for _, f := range passed {
		f.Close()
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	done := make(chan struct{})
	var sigWG sync.WaitGroup
	sigWG.Go(func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	})
	err = cmd.Wait()
	signal.Stop(sigs)
	close(done)
	sigWG.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return exit.ExitCode()
	default:
		return fail(err)
	}
}

// renameArg replaces the API socket path in whichever form it was given:
// a separate argument, --api-socket=PATH (or a prefix of it), or -aPATH.
func renameArg(args []string, from, to string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		switch {
		case a == from:
			out[i] = to
		case strings.HasPrefix(a, "--") && strings.HasSuffix(a, "="+from):
			out[i] = strings.TrimSuffix(a, from) + to
		case a == "-a"+from:
			out[i] = "-a" + to
		default:
			out[i] = a
		}
	}
	return out
}

// relayAPI serves the client's API socket until ln is closed: one request
// per connection, as slirp4netns serves it.
func relayAPI(ln net.Listener, daemon, logPath string) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			defer c.Close()
			rec := relayOne(c.(*net.UnixConn), daemon)
			if err := appendJSON(logPath, rec); err != nil {
				fmt.Fprintf(os.Stderr, "slirp test wrapper: %v\n", err)
			}
		})
	}
}

// relayOne reads the request to EOF (both clients half-close; a client
// that does not gets 5 s), sends it to the daemon in one write, and
// returns the daemon's reply, read to EOF, to the client in one write.
func relayOne(c *net.UnixConn, daemon string) apiRecord {
	var rec apiRecord
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	req, err := io.ReadAll(c)
	rec.Request = string(req)
	rec.HalfClosed = err == nil
	d, err := net.DialTimeout("unix", daemon, 5*time.Second)
	if err != nil {
		rec.Err = err.Error()
		return rec
	}
	defer d.Close()
	d.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := d.Write(req); err != nil {
		rec.Err = err.Error()
		return rec
	}
	_ = d.(*net.UnixConn).CloseWrite()
	reply, err := io.ReadAll(d)
	rec.Reply = string(reply)
	if err != nil {
		rec.Err = err.Error()
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(reply); err != nil && rec.Err == "" {
		rec.Err = "reply to client: " + err.Error()
	}
	return rec
}

// appendJSON appends v as one line to path, in one O_APPEND write, so
// that daemons running at the same time do not mix their lines.
func appendJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o666)
	if err != nil {
		return fmt.Errorf("log to %s: %w", path, err)
	}
	defer f.Close()
	_, err = f.Write(append(b, '\n'))
	return err
}

// readJSONLines reads a log written by appendJSON; a missing file is an
// empty log.
func readJSONLines[T any](path string) ([]T, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []T
	for line := range bytes.Lines(b) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(line, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, v)
	}
	return out, nil
}
