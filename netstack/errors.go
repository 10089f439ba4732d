package netstack

import (
	"errors"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// StackError is a gVisor tcpip.Error as a Go error. It keeps the original
// value so callers inside this package can still switch on its type.
type StackError struct{ Err tcpip.Error }

func (e *StackError) Error() string { return e.Err.String() }

// stackErr converts a tcpip.Error once, at the boundary; nil stays nil.
func stackErr(err tcpip.Error) error {
	if err == nil {
		return nil
	}
	return &StackError{Err: err}
}

// ErrClosed is returned by methods called after Close.
var ErrClosed = errors.New("netstack: closed")
