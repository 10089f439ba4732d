package launcher

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// terminal relays between the user's terminal and the container's pty
// master (-t): raw mode on the user's side, window size kept in step.
type terminal struct {
	master   *os.File
	restore  func()
	winch    chan os.Signal
	stopWin  chan struct{}
	outDone  chan struct{}
	closeOne sync.Once
}

func startTerminal(master *os.File, stdio Stdio, log *slog.Logger) (*terminal, error) {
	t := &terminal{master: master, restore: func() {}, winch: make(chan os.Signal, 1), stopWin: make(chan struct{}), outDone: make(chan struct{})}
	inFD := int(stdio.In.Fd())
	if term.IsTerminal(inFD) {
		old, err := term.MakeRaw(inFD)
		if err != nil {
			return nil, err
		}
		t.restore = func() { _ = term.Restore(inFD, old) }
	}
	t.resize(stdio)
	signal.Notify(t.winch, syscall.SIGWINCH)
	go func() {
		for {
			select {
			case <-t.winch:
				t.resize(stdio)
			case <-t.stopWin:
				return
			}
		}
	}()
	go func() {
		defer close(t.outDone)
		// Ends with EIO once every slave fd is closed (the container
		// exited).
		_, err := io.Copy(stdio.Out, master)
		if err != nil && !errors.Is(err, syscall.EIO) {
			log.Debug("pty output", "err", err)
		}
	}()
	// Reading stdin cannot be interrupted portably (it may be a blocking
	// terminal shared with the shell), so this goroutine ends with the
	// process, or when the container side closes.
	go func() {
		_, _ = io.Copy(master, stdio.In)
	}()
	return t, nil
}

func (t *terminal) resize(stdio Stdio) {
	for _, f := range []*os.File{stdio.In, stdio.Out} {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
			_ = unix.IoctlSetWinsize(int(t.master.Fd()), unix.TIOCSWINSZ, ws)
			return
		}
	}
}

// drain waits (briefly) for the container's last output.
func (t *terminal) drain() {
	select {
	case <-t.outDone:
	case <-time.After(2 * time.Second):
	}
}

func (t *terminal) close() {
	t.closeOne.Do(func() {
		signal.Stop(t.winch)
		close(t.stopWin)
		t.restore()
		t.master.Close()
	})
}
