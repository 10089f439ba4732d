//go:build !linux || !cgo

package sockserve

const available = false
