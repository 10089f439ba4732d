//go:build linux && cgo

package sandbox

/*
#include <stdlib.h>
#include "sandbox.h"
*/
import "C"

import (
	"errors"
	"sync"
	"syscall"
	"unsafe"
)

// constructorLinked says this binary has the constructor that builds the
// sandbox.
const constructorLinked = true

var constructorOutcome = sync.OnceValue(func() outcome {
	o := C.sandbox_get_outcome()
	return outcome{
		asked:        o.asked != 0,
		joinedUserns: o.joined_userns != 0,
		done:         o.done != 0,
		err:          stepError(&o.failed),
	}
})

func stepError(s *C.struct_sandbox_step) error {
	if s.err == 0 {
		return nil
	}
	return &StepError{
		Op:    C.GoString(&s.op[0]),
		Path:  C.GoString(&s.path[0]),
		Errno: syscall.Errno(s.err),
	}
}

// parsePlanC runs the constructor's plan parser, so that tests can hold it
// to the Go encoder and fuzz it.
func parsePlanC(text string) ([]planEntry, error) {
	if len(text) > 1<<20 {
		return nil, errors.New("plan too long to test")
	}
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	var (
		p    C.struct_sandbox_plan
		step C.struct_sandbox_step
	)
	defer C.sandbox_plan_free(&p)
	if C.sandbox_plan_parse(ctext, &p, &step) != 0 {
		return nil, stepError(&step)
	}
	out := make([]planEntry, 0, int(p.n))
	for i := 0; i < int(p.n); i++ {
		e := p.e[i]
		pe := planEntry{Kind: entryKind(e.kind), Path: C.GoString(e.path)}
		if e.target != nil {
			pe.Target = C.GoString(e.target)
		}
		out = append(out, pe)
	}
	return out, nil
}
