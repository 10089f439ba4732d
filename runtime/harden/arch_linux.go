package harden

import (
	goruntime "runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// nativeAudit is the AUDIT_ARCH value of the native system call table.
func nativeAudit() (uint32, bool) {
	switch goruntime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64, true
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64, true
	case "386":
		return unix.AUDIT_ARCH_I386, true
	case "arm":
		return unix.AUDIT_ARCH_ARM, true
	}
	return 0, false
}

func seccompSetFilter(prog *unix.SockFprog) error {
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(prog)))
	if errno != 0 {
		return errno
	}
	return nil
}
