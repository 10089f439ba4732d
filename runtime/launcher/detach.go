package launcher

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/slirp-dev/slirp/runtime/state"
)

// RunDetached starts the container under a supervisor process of its own
// (its own session, output to the container's log file) and returns once
// the command runs. It prints nothing; the caller prints the id.
func RunDetached(ctx context.Context, o Options, stdio Stdio, log *slog.Logger) (int, error) {
	if o.TTY {
		return 125, fail(125, errors.New("-t cannot be combined with -d: a detached container has no terminal"))
	}
	if o.StateRoot == "" {
		o.StateRoot = state.DefaultRoot()
	}
	if o.ID == "" {
		o.ID = state.NewID()
	}
	if err := os.MkdirAll(filepath.Join(o.StateRoot, "logs"), 0o700); err != nil {
		return 125, fail(125, fmt.Errorf("state dir: %w", err))
	}
	logPath := filepath.Join(o.StateRoot, "logs", o.ID+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 125, fail(125, fmt.Errorf("container log: %w", err))
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 125, fail(125, err)
	}
	defer devnull.Close()
	optR, optW, err := os.Pipe()
	if err != nil {
		return 125, fail(125, err)
	}
	statR, statW, err := os.Pipe()
	if err != nil {
		optR.Close()
		optW.Close()
		return 125, fail(125, err)
	}
	self, err := os.Executable()
	if err != nil {
		return 125, fail(125, err)
	}
	cmd := exec.Command(self, roleSupervise, logPath)
	cmd.ExtraFiles = []*os.File{optR, statW}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		optR.Close()
		optW.Close()
		statR.Close()
		statW.Close()
		return 125, fail(125, fmt.Errorf("start supervisor: %w", err))
	}
	optR.Close()
	statW.Close()
	defer statR.Close()
	// The supervisor lives on; reap it in the background if it fails
	// while we are still here.
	go func() { _ = cmd.Wait() }()
	err = json.NewEncoder(optW).Encode(o)
	optW.Close()
	if err != nil {
		return 125, fail(125, fmt.Errorf("send options to supervisor: %w", err))
	}
	line, rerr := bufio.NewReader(statR).ReadString('\n')
	line = strings.TrimSpace(line)
	switch {
	case strings.HasPrefix(line, "ok "):
		return 0, nil
	case strings.HasPrefix(line, "error "):
		msg := strings.TrimPrefix(line, "error ")
		code := 125
		if i := strings.IndexByte(msg, ' '); i > 0 {
			_, _ = fmt.Sscanf(msg[:i], "%d", &code)
			msg = msg[i+1:]
		}
		return code, fail(code, errors.New(msg))
	}
	if rerr == nil || errors.Is(rerr, io.EOF) {
		rerr = errors.New("supervisor exited before the container started")
	}
	tail, _ := os.ReadFile(logPath)
	return 125, fail(125, fmt.Errorf("%w: %s", rerr, strings.TrimSpace(string(tail))))
}

// superviseMain runs a detached container: options on fd 3, status (one
// line: "ok ID" or "error CODE MSG") on fd 4.
func superviseMain(args []string) int {
	status := os.NewFile(4, "status")
	var o Options
	if err := json.NewDecoder(os.NewFile(3, "options")).Decode(&o); err != nil {
		fmt.Fprintf(status, "error 125 read options: %v\n", err)
		return 125
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.LogLevel}))
	reported := false
	started := func(id string) {
		fmt.Fprintf(status, "ok %s\n", id)
		status.Close()
		reported = true
	}
	stdio := Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}
	code, err := run(context.Background(), o, stdio, log, started)
	if err != nil {
		fmt.Fprintf(os.Stderr, "slirprun: %v\n", err)
		if !reported {
			fmt.Fprintf(status, "error %d %s\n", code, strings.ReplaceAll(err.Error(), "\n", " "))
		}
	}
	// Leave the log for `slirprun logs`; `rm` removes it.
	if o.Remove && len(args) == 1 {
		_ = os.Remove(args[0])
	}
	return code
}
