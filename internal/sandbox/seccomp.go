package sandbox

import (
	"fmt"
	"slices"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/sys/unix"
)

// The main filter has three parts, checked in this order:
//
//  1. Killed: slirp4netns' blocklist (--enable-seccomp), with
//     SECCOMP_RET_KILL_PROCESS as there: executing programs, tracing other
//     processes, loading modules, mounting, changing namespaces or the
//     root, rebooting, opening files by handle. The daemon never makes
//     these calls, so one means something has taken it over. clone with
//     a namespace flag is unshare by another name and is killed too (by
//     a second filter, see Policies).
//  2. Refused with ENOSYS: calls that Go's os package and the C library
//     probe and then do without (pidfd_open, pidfd_send_signal; clone3,
//     whose flags are in memory where a filter cannot check them, after
//     which glibc falls back to clone). slirp4netns kills the pidfd
//     calls; killing here would turn os.FindProcess into a crash.
//  3. Allowed: the calls the daemon makes once it runs, measured with
//     strace -f on the daemon (plain and -race builds) through the
//     end-to-end tests of cmd/slirp and a session that used the API
//     socket, TCP and UDP forwards, DNS, DHCP, IPv6 and ping, with the
//     calls of the set-up phase (execve, bind of the API socket, ...)
//     left out; plus what the Go runtime, the net and os packages and
//     gVisor's link endpoint use on paths the measurement may not have
//     reached (thread exit, signals, waiting for the helper, splice for
//     socket-to-socket copies, mmsg batching). With the filters installed
//     right before the ready fd, cmd/slirp's end-to-end tests pass, plain
//     and with -race.
//
// Everything else fails with EPERM. An allow-list measured in tests can
// miss a call made on a rare path, or one a newer Go runtime starts to
// make; EPERM turns that into an error the daemon reports on one
// connection, where killing it would take the container's network down.
// The calls that matter for an escape are in part 1 and are killed.

// killedSyscalls is slirp4netns' blocklist, plus mount_setattr, which
// belongs to the same family and is newer than the list. prctl, also on
// slirp4netns' list, is handled with the allowed calls: the Go runtime
// names its memory mappings with prctl(PR_SET_VMA).
var killedSyscalls = []string{
	"execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev",
	"lookup_dcookie", "pidfd_getfd", "delete_module", "init_module",
	"finit_module", "chroot", "mount", "umount", "umount2", "pivot_root",
	"fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
	"mount_setattr", "open_by_handle_at", "name_to_handle_at", "setns",
	"unshare", "kexec_load", "kexec_file_load", "reboot",
}

// enosysSyscalls are refused with ENOSYS (see above).
var enosysSyscalls = []string{"clone3", "pidfd_open", "pidfd_send_signal"}

// allowedSyscalls are the calls the running daemon makes. Names that an
// architecture lacks (open, epoll_wait, arch_prctl, ... on arm64) are
// dropped for it.
var allowedSyscalls = []string{
	// Go runtime: memory, threads, scheduling, signals, time.
	"brk", "mmap", "munmap", "mprotect", "madvise", "mremap", "futex",
	"clone", "exit", "exit_group", "gettid", "getpid", "getppid",
	"set_robust_list", "rseq", "set_tid_address", "arch_prctl",
	"sched_yield", "sched_getaffinity", "nanosleep", "clock_nanosleep",
	"clock_gettime", "clock_getres", "gettimeofday", "time",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
	"tgkill", "tkill", "kill", "restart_syscall", "getrandom", "uname",
	"prlimit64", "getrlimit", "getuid", "geteuid", "getgid", "getegid",
	"getgroups", "capget", "getcwd",
	// Polling.
	"epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2",
	"epoll_wait", "eventfd2", "pipe2", "poll", "ppoll", "pselect6",
	// Descriptors and files: the tap and the sockets, resolv.conf,
	// hosts and zone files read from the read-only root.
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv",
	"pwritev", "close", "fcntl", "dup", "dup2", "dup3", "ioctl", "lseek",
	"openat", "open", "newfstatat", "fstat", "stat", "lstat", "statx",
	"readlinkat", "readlink", "getdents64", "faccessat", "faccessat2",
	"access", "unlinkat", "splice",
	// Sockets: host connections, forwards, the API, the helper.
	"socket", "socketpair", "connect", "bind", "listen", "accept",
	"accept4", "getsockname", "getpeername", "getsockopt", "setsockopt",
	"sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
	"shutdown",
	// The namespace helper stays a child of the daemon.
	"wait4", "waitid",
}

// allowedPrctl are the prctl operations allowed: PR_SET_VMA, with which
// the Go runtime names its memory mappings (the only one measured). Other
// operations get EPERM.
var allowedPrctl = []uint64{unix.PR_SET_VMA}

// namespaceFlags are the clone flags that create namespaces. CLONE_NEWTIME
// is left out: clone(2) has no room for it (its bit is part of the exit
// signal there), only clone3 and unshare take it, and both are refused.
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP

// Policies returns the daemon's seccomp filters for this architecture.
// The kernel runs every installed filter and takes the strictest answer.
//
// There are two because of how go-seccomp-bpf assembles conditions: a
// rule with argument conditions loads the argument into the accumulator
// and does not load the system call number back when the conditions do
// not match, so any rule after it compares an argument with system call
// numbers. Conditional rules are therefore kept last in each filter, and
// the clone rule, which must kill while every other clone is allowed, gets
// a filter of its own.
func Policies() ([]seccomp.Policy, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	known := func(names []string) []string {
		var out []string
		for _, n := range names {
			if _, ok := info.SyscallNames[n]; ok && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
		return out
	}
	var prctl []seccomp.NameWithConditions
	for _, op := range allowedPrctl {
		prctl = append(prctl, seccomp.NameWithConditions{
			Name:       "prctl",
			Conditions: []seccomp.Condition{{Argument: 0, Operation: seccomp.Equal, Value: op}},
		})
	}
	main := seccomp.Policy{
		DefaultAction: seccomp.ActionErrno, // EPERM
		Syscalls: []seccomp.SyscallGroup{
			{Names: known(killedSyscalls), Action: seccomp.ActionKillProcess},
			{Names: known(enosysSyscalls), Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS)},
			// The only conditional rule, last.
			{Names: known(allowedSyscalls), NamesWithCondtions: prctl, Action: seccomp.ActionAllow},
		},
	}
	clone := seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{{
			NamesWithCondtions: []seccomp.NameWithConditions{{
				Name:       "clone",
				Conditions: []seccomp.Condition{{Argument: 0, Operation: seccomp.BitsSet, Value: namespaceFlags}},
			}},
			Action: seccomp.ActionKillProcess,
		}},
	}
	// The clone filter goes first: once the main filter is in, neither
	// prctl(PR_SET_NO_NEW_PRIVS) nor seccomp(2) is allowed any more.
	return []seccomp.Policy{clone, main}, nil
}

// Killed returns the names of the calls that kill the daemon, for this
// architecture (slirp4netns prints its list as "seccomp: The following
// syscalls are blocked: ...").
func Killed() []string {
	info, err := arch.GetInfo("")
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range killedSyscalls {
		if _, ok := info.SyscallNames[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// InstallSeccomp sets no_new_privs and installs the filters on every
// thread of the process (SECCOMP_FILTER_FLAG_TSYNC); threads created later
// inherit them. They cannot be undone.
func InstallSeccomp() error {
	ps, err := Policies()
	if err != nil {
		return err
	}
	for _, p := range ps {
		err := seccomp.LoadFilter(seccomp.Filter{
			NoNewPrivs: true,
			Flag:       seccomp.FilterFlagTSync,
			Policy:     p,
		})
		if err != nil {
			return fmt.Errorf("--enable-seccomp: %w", err)
		}
	}
	return nil
}
