//go:build linux && cgo

package nsenter

/*
#include "nsenter.h"
*/
import "C"

import (
	"sync"
	"syscall"
)

// Started returns what the constructor did when this process started.
func Started() Outcome { return started() }

var started = sync.OnceValue(func() Outcome {
	o := C.nsenter_get_outcome()
	return Outcome{
		Asked:         o.asked != 0,
		JoinedUserns:  o.joined_userns != 0,
		JoinedNetns:   o.joined_netns != 0,
		UsernsWasOurs: o.userns_same != 0,
		UsernsErr:     stepError(&o.userns_failed),
		Err:           stepError(&o.failed),
	}
})

func stepError(s *C.struct_nsenter_step) error {
	if s.err == 0 {
		return nil
	}
	return &Error{
		Op:    C.GoString(&s.op[0]),
		Path:  C.GoString(&s.path[0]),
		Errno: syscall.Errno(s.err),
	}
}
