package launcher

import (
	"os"
	"syscall"
)

// Hidden roles of the slirprun binary (argv[1]).
const (
	roleInit      = "__init"
	roleExec      = "__exec"
	roleWatch     = "__watch"
	roleSupervise = "__supervise"
	rolePod       = "__pod"
	rolePause     = "__pause"
	rolePodJoin   = "__podjoin"
)

// forwardedSignals are passed on to the container. SIGCHLD, SIGPIPE and
// SIGURG (the Go runtime's preemption signal) are not; SIGWINCH is handled
// by the terminal code.
var forwardedSignals = []os.Signal{
	syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGALRM, syscall.SIGCONT,
}

// Role runs the hidden role named by args[1], if any, and returns its exit
// code with ok=true. main calls it first, before flag parsing and before
// starting any goroutine of its own.
func Role(args []string) (code int, ok bool) {
	if len(args) < 2 {
		return 0, false
	}
	rest := args[2:]
	switch args[1] {
	case roleInit:
		return initMain(rest), true
	case roleExec:
		return execMain(), true
	case roleWatch:
		return watchMain(rest), true
	case roleSupervise:
		return superviseMain(rest), true
	case rolePod:
		return podMain(rest), true
	case rolePause:
		return pauseMain(), true
	case rolePodJoin:
		return podJoinMain(rest), true
	}
	return 0, false
}
