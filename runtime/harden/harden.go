// Package harden applies the default container hardening right before the
// user's command is executed: a reduced capability bounding set, the
// no_new_privs bit, and a seccomp filter that refuses the system calls
// containers have no business making (kernel modules, kexec, namespace and
// mount manipulation, keyrings, ...).
//
// Capabilities and seccomp are per thread: call Apply on a goroutine locked
// to its OS thread and exec from that same thread.
package harden

import (
	"fmt"
	"slices"
	"strings"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// DefaultCaps is the capability set podman gives containers.
var DefaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
	"CAP_SETUID", "CAP_SYS_CHROOT",
}

var capNames = map[string]uintptr{
	"CAP_CHOWN": unix.CAP_CHOWN, "CAP_DAC_OVERRIDE": unix.CAP_DAC_OVERRIDE,
	"CAP_DAC_READ_SEARCH": unix.CAP_DAC_READ_SEARCH, "CAP_FOWNER": unix.CAP_FOWNER,
	"CAP_FSETID": unix.CAP_FSETID, "CAP_KILL": unix.CAP_KILL, "CAP_SETGID": unix.CAP_SETGID,
	"CAP_SETUID": unix.CAP_SETUID, "CAP_SETPCAP": unix.CAP_SETPCAP,
	"CAP_LINUX_IMMUTABLE": unix.CAP_LINUX_IMMUTABLE, "CAP_NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE,
	"CAP_NET_BROADCAST": unix.CAP_NET_BROADCAST, "CAP_NET_ADMIN": unix.CAP_NET_ADMIN,
	"CAP_NET_RAW": unix.CAP_NET_RAW, "CAP_IPC_LOCK": unix.CAP_IPC_LOCK, "CAP_IPC_OWNER": unix.CAP_IPC_OWNER,
	"CAP_SYS_MODULE": unix.CAP_SYS_MODULE, "CAP_SYS_RAWIO": unix.CAP_SYS_RAWIO,
	"CAP_SYS_CHROOT": unix.CAP_SYS_CHROOT, "CAP_SYS_PTRACE": unix.CAP_SYS_PTRACE,
	"CAP_SYS_PACCT": unix.CAP_SYS_PACCT, "CAP_SYS_ADMIN": unix.CAP_SYS_ADMIN,
	"CAP_SYS_BOOT": unix.CAP_SYS_BOOT, "CAP_SYS_NICE": unix.CAP_SYS_NICE,
	"CAP_SYS_RESOURCE": unix.CAP_SYS_RESOURCE, "CAP_SYS_TIME": unix.CAP_SYS_TIME,
	"CAP_SYS_TTY_CONFIG": unix.CAP_SYS_TTY_CONFIG, "CAP_MKNOD": unix.CAP_MKNOD,
	"CAP_LEASE": unix.CAP_LEASE, "CAP_AUDIT_WRITE": unix.CAP_AUDIT_WRITE,
	"CAP_AUDIT_CONTROL": unix.CAP_AUDIT_CONTROL, "CAP_SETFCAP": unix.CAP_SETFCAP,
	"CAP_MAC_OVERRIDE": unix.CAP_MAC_OVERRIDE, "CAP_MAC_ADMIN": unix.CAP_MAC_ADMIN,
	"CAP_SYSLOG": unix.CAP_SYSLOG, "CAP_WAKE_ALARM": unix.CAP_WAKE_ALARM,
	"CAP_BLOCK_SUSPEND": unix.CAP_BLOCK_SUSPEND, "CAP_AUDIT_READ": unix.CAP_AUDIT_READ,
	"CAP_PERFMON": unix.CAP_PERFMON, "CAP_BPF": unix.CAP_BPF, "CAP_CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE,
}

// ParseCaps turns names (with or without the CAP_ prefix, any case) into a
// set; "ALL" means every capability.
func ParseCaps(names []string) (map[uintptr]bool, error) {
	set := map[uintptr]bool{}
	for _, n := range names {
		n = strings.ToUpper(strings.TrimSpace(n))
		if n == "ALL" {
			for _, v := range capNames {
				set[v] = true
			}
			continue
		}
		if !strings.HasPrefix(n, "CAP_") {
			n = "CAP_" + n
		}
		v, ok := capNames[n]
		if !ok {
			return nil, fmt.Errorf("unknown capability %q", n)
		}
		set[v] = true
	}
	return set, nil
}

// Options say what Apply does.
type Options struct {
	// Caps is the bounding set to keep; nil keeps everything.
	Caps map[uintptr]bool
	// NoNewPrivs sets PR_SET_NO_NEW_PRIVS.
	NoNewPrivs bool
	// Seccomp installs DefaultSeccomp.
	Seccomp bool
}

// DropBoundingSet drops every capability not in keep from this thread's
// bounding set, and clears the ambient set. It needs CAP_SETPCAP, so it
// runs before switching to a non-root user.
func DropBoundingSet(keep map[uintptr]bool) error {
	if keep == nil {
		return nil
	}
	last := lastCap()
	for c := uintptr(0); c <= last; c++ {
		if keep[c] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	return nil
}

func lastCap() uintptr {
	last := uintptr(0)
	for _, v := range capNames {
		last = max(last, v)
	}
	// The running kernel may know more; PR_CAPBSET_READ says which exist.
	for c := last + 1; c < 64; c++ {
		if _, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, c, 0, 0, 0); err != nil {
			break
		}
		last = c
	}
	return last
}

// DeniedSyscalls are refused with EPERM by the default filter. The list
// follows the docker/podman default profile's deny side for a container
// without CAP_SYS_ADMIN and friends.
var DeniedSyscalls = []string{
	"acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "delete_module",
	"finit_module", "fsconfig", "fsmount", "fsopen", "fspick", "init_module",
	"ioperm", "iopl", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie",
	"mount", "mount_setattr", "move_mount", "name_to_handle_at", "nfsservctl",
	"open_by_handle_at", "open_tree", "perf_event_open", "pivot_root",
	"process_vm_readv", "process_vm_writev", "quotactl", "reboot", "request_key",
	"setns", "settimeofday", "swapoff", "swapon", "syslog", "umount2", "unshare",
	"uselib", "userfaultfd", "vhangup", "_sysctl", "sysfs", "ustat", "create_module",
	"get_kernel_syms", "query_module", "vm86", "vm86old", "lookup_dcookie",
}

// Filter returns the default seccomp filter for this architecture: deny
// DeniedSyscalls (those the architecture has) with EPERM, allow the rest.
func Filter() (seccomp.Filter, error) {
	names := slices.Clone(DeniedSyscalls)
	slices.Sort(names)
	names = slices.Compact(names)
	var known []string
	for _, n := range names {
		p := seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: []seccomp.SyscallGroup{{Names: []string{n}, Action: seccomp.ActionErrno}}}
		if _, err := p.Assemble(); err == nil {
			known = append(known, n)
		}
	}
	f := seccomp.Filter{
		NoNewPrivs: true,
		Flag:       seccomp.FilterFlagTSync,
		Policy: seccomp.Policy{
			DefaultAction: seccomp.ActionAllow,
			Syscalls: []seccomp.SyscallGroup{
				{Names: known, Action: seccomp.ActionErrno},
				// clone with namespace flags would create namespaces
				// like unshare does; refuse it the same way.
				{NamesWithCondtions: []seccomp.NameWithConditions{{
					Name: "clone",
					Conditions: []seccomp.Condition{{
						Argument: 0, Operation: seccomp.BitsSet,
						Value: unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP,
					}},
				}}, Action: seccomp.ActionErrno},
				// clone3 passes its flags in memory, out of a filter's
				// reach: ENOSYS makes libc fall back to clone, which the
				// rule above checks.
				{Names: []string{"clone3"}, Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS)},
			},
		},
	}
	return f, nil
}

// foreignArchFilter refuses every system call made through another ABI
// (i386 int 0x80, x32) with ENOSYS: the deny list is written for the
// native table, and those ABIs would slip past it.
func foreignArchFilter() ([]unix.SockFilter, error) {
	native, ok := nativeAudit()
	if !ok {
		return nil, nil
	}
	insns := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: native, SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW},
	}
	raw, err := bpf.Assemble(insns)
	if err != nil {
		return nil, err
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}

// ApplyAfterUser sets no_new_privs and loads the seccomp filters (the
// foreign-ABI guard, then the default deny list). It is the last step
// before execve, after DropBoundingSet and the switch to the container
// user, on the same locked thread.
func ApplyAfterUser(o Options) error {
	if o.NoNewPrivs || o.Seccomp {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	if !o.Seccomp {
		return nil
	}
	prog, err := foreignArchFilter()
	if err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	if prog != nil {
		fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
		if err := seccompSetFilter(&fprog); err != nil {
			return fmt.Errorf("seccomp: load arch filter: %w", err)
		}
	}
	f, err := Filter()
	if err != nil {
		return err
	}
	if err := seccomp.LoadFilter(f); err != nil {
		return fmt.Errorf("seccomp: load default filter: %w", err)
	}
	return nil
}
