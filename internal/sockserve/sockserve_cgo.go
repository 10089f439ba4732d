//go:build linux && cgo

package sockserve

// The constructor is in sockserve_linux.c; linking this file links it in.

/*
#cgo CFLAGS: -Wall -Wextra -O2
*/
import "C"

const available = true
