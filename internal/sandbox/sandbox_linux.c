//go:build linux && cgo

// The constructor below runs when the dynamic loader initialises the
// program, before the Go runtime starts and so while the process has one
// thread. unshare(CLONE_NEWNS), setns(CLONE_NEWUSER), credentials and
// capabilities are per thread in Linux; done here, every thread the Go
// runtime creates later inherits them. See sandbox.go for the environment
// protocol and the order of the steps.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

#include "sandbox.h"

// glibc 2.36's <sys/mount.h> conflicts with <linux/mount.h>, so the few
// mount_setattr(2) definitions are repeated here. The syscall number is
// the same on every architecture (the unified table, Linux 5.12).
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#define SB_MOUNT_ATTR_RDONLY 0x00000001
#define SB_MOUNT_ATTR_NOSUID 0x00000002
#define SB_MOUNT_ATTR_NODEV 0x00000004
#define SB_MOUNT_ATTR_NOEXEC 0x00000008
#define SB_AT_RECURSIVE 0x8000

struct sb_mount_attr {
	uint64_t attr_set;
	uint64_t attr_clr;
	uint64_t propagation;
	uint64_t userns_fd;
};

// The new root is assembled on a tmpfs mounted over /tmp (a directory
// every system has) in the new mount namespace; the caller's /tmp is not
// touched. Files the plan keeps were opened before, so hiding /tmp does not
// hide them.
#define STAGE "/tmp"

static struct sandbox_outcome outcome;

const struct sandbox_outcome *sandbox_get_outcome(void) { return &outcome; }

static void record(struct sandbox_step *step, const char *op, const char *path, int err) {
	step->err = err;
	snprintf(step->op, sizeof(step->op), "%s", op);
	snprintf(step->path, sizeof(step->path), "%s", path);
}

static int fail(const char *op, const char *path, int err) {
	record(&outcome.failed, op, path, err);
	return -1;
}

// ---- plan parsing ----

static int hexval(char c) {
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	if (c >= 'A' && c <= 'F') {
		return c - 'A' + 10;
	}
	return -1;
}

// decode_field percent-decodes the field [s, end) into out (NUL-terminated)
// and returns the number of bytes written, or -1 when the field is empty,
// malformed, or decodes to a NUL byte.
static int decode_field(const char *s, const char *end, char *out) {
	int n = 0;
	if (s == end) {
		return -1;
	}
	while (s < end) {
		char c = *s++;
		if (c == '%') {
			if (end - s < 2) {
				return -1;
			}
			int hi = hexval(s[0]), lo = hexval(s[1]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
				return -1;
			}
			c = (char)(hi * 16 + lo);
			s += 2;
		}
		out[n++] = c;
	}
	out[n] = '\0';
	return n;
}

// under reports whether path is dir or inside it.
static int under(const char *path, const char *dir) {
	size_t n = strlen(dir);
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

// valid_path accepts an absolute path with no empty, "." or ".." component
// and no trailing slash, outside /etc and /run (which are bound whole).
static int valid_path(const char *p) {
	if (p[0] != '/' || p[1] == '\0' || strlen(p) >= SANDBOX_PATH_MAX) {
		return 0;
	}
	for (const char *c = p + 1;;) {
		const char *slash = strchr(c, '/');
		size_t len = slash ? (size_t)(slash - c) : strlen(c);
		if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.')) {
			return 0;
		}
		if (!slash) {
			break;
		}
		c = slash + 1;
	}
	return !under(p, "/etc") && !under(p, "/run");
}

void sandbox_plan_free(struct sandbox_plan *plan) {
	free(plan->arena);
	plan->arena = NULL;
	plan->n = 0;
}

// split_fields finds the space-separated fields of [line, end), at most
// max of them: field i is [fs[i], fe[i]). It returns how many there are, or
// -1 when there are more than max.
static int split_fields(const char *line, const char *end, const char **fs, const char **fe, int max) {
	int n = 0;
	for (const char *p = line;;) {
		const char *sp = memchr(p, ' ', (size_t)(end - p));
		if (n == max) {
			return -1;
		}
		fs[n] = p;
		fe[n] = sp != NULL ? sp : end;
		n++;
		if (sp == NULL) {
			return n;
		}
		p = sp + 1;
	}
}

static int plan_error(struct sandbox_step *err, const char *what, const char *line, const char *end) {
	char buf[256];
	size_t n = (size_t)(end - line);
	if (n > sizeof(buf) - 1) {
		n = sizeof(buf) - 1;
	}
	memcpy(buf, line, n);
	buf[n] = '\0';
	record(err, what, buf, EINVAL);
	return -1;
}

// The plan is a list of lines separated by '\n'; each line is a kind and
// its fields separated by single spaces, every field percent-encoded:
//
//	d PATH          make a directory
//	l PATH TARGET   make a symbolic link to TARGET
//	f PATH          make an empty file and bind the host file at PATH on
//	                it, read-only
//
// A path may not lie below a symbolic link the plan made earlier, so that
// no later step is redirected outside the new root.
int sandbox_plan_parse(const char *text, struct sandbox_plan *plan, struct sandbox_step *err) {
	memset(plan, 0, sizeof(*plan));
	size_t len = strlen(text);
	if (len > SANDBOX_PLAN_BYTES) {
		record(err, "parse sandbox plan: too long", "", E2BIG);
		return -1;
	}
	if (len == 0) {
		return 0;
	}
	plan->arena = malloc(len + 1);
	if (plan->arena == NULL) {
		record(err, "parse sandbox plan", "", ENOMEM);
		return -1;
	}
	char *out = plan->arena;
	const char *line = text;
	for (;;) {
		const char *end = strchr(line, '\n');
		if (end == NULL) {
			end = text + len;
		}
		if (plan->n == SANDBOX_PLAN_MAX) {
			record(err, "parse sandbox plan: too many entries", "", E2BIG);
			return -1;
		}
		struct sandbox_plan_entry *e = &plan->e[plan->n];
		const char *f[3], *fend[3];
		int nf = split_fields(line, end, f, fend, 3);
		if (nf < 2 || fend[0] - f[0] != 1) {
			return plan_error(err, "parse sandbox plan: malformed line", line, end);
		}
		e->kind = f[0][0];
		e->fd = -1;
		char *pathfield = NULL;
		switch (e->kind) {
		case 'd':
			if (nf != 2) {
				return plan_error(err, "parse sandbox plan: 'd' takes a path", line, end);
			}
			pathfield = out;
			if (decode_field(f[1], fend[1], out) < 0) {
				return plan_error(err, "parse sandbox plan: bad path", line, end);
			}
			out += strlen(out) + 1;
			break;
		case 'l':
			if (nf != 3) {
				return plan_error(err, "parse sandbox plan: 'l' takes a path and a target", line, end);
			}
			pathfield = out;
			if (decode_field(f[1], fend[1], out) < 0) {
				return plan_error(err, "parse sandbox plan: bad path", line, end);
			}
			out += strlen(out) + 1;
			e->target = out;
			if (decode_field(f[2], fend[2], out) < 0 || strlen(out) >= SANDBOX_PATH_MAX) {
				return plan_error(err, "parse sandbox plan: bad link target", line, end);
			}
			out += strlen(out) + 1;
			break;
		case 'f':
			if (nf != 2) {
				return plan_error(err, "parse sandbox plan: 'f' takes a path", line, end);
			}
			pathfield = out;
			if (decode_field(f[1], fend[1], out) < 0) {
				return plan_error(err, "parse sandbox plan: bad path", line, end);
			}
			out += strlen(out) + 1;
			break;
		default:
			return plan_error(err, "parse sandbox plan: unknown kind", line, end);
		}
		e->path = pathfield;
		if (!valid_path(e->path)) {
			return plan_error(err, "parse sandbox plan: path must be absolute and clean, outside /etc and /run", line, end);
		}
		for (int i = 0; i < plan->n; i++) {
			const struct sandbox_plan_entry *prev = &plan->e[i];
			if (prev->kind == 'l' && under(e->path, prev->path)) {
				return plan_error(err, "parse sandbox plan: path at or below a link the plan made", line, end);
			}
		}
		plan->n++;
		if (end == text + len) {
			break;
		}
		line = end + 1;
	}
	return 0;
}

// ---- the sandbox ----

// join_userns joins the user namespace at path (unless the process is in
// it already) and becomes uid and gid 0 there, which gives it every
// capability in that namespace until they are dropped below.
static int join_userns(const char *path) {
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		return fail("open", path, errno);
	}
	struct stat a, b;
	int same = fstat(fd, &a) == 0 && stat("/proc/self/ns/user", &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
	if (!same && setns(fd, CLONE_NEWUSER) != 0) {
		int e = errno;
		close(fd);
		return fail("setns", path, e);
	}
	close(fd);
	outcome.joined_userns = !same;
	if (setresgid(0, 0, 0) != 0) {
		return fail("become gid 0 in the user namespace", path, errno);
	}
	if (setresuid(0, 0, 0) != 0) {
		return fail("become uid 0 in the user namespace", path, errno);
	}
	return 0;
}

// restrict_mount makes the mount at path (and, with rec, every mount below
// it) read-only, nosuid, nodev and noexec, and with slave a slave of its
// peers: changes from the caller's namespace still arrive, nothing goes
// back.
static int restrict_mount(const char *path, int rec, int slave) {
	struct sb_mount_attr attr = {
		.attr_set = SB_MOUNT_ATTR_RDONLY | SB_MOUNT_ATTR_NOSUID | SB_MOUNT_ATTR_NODEV | SB_MOUNT_ATTR_NOEXEC,
		.propagation = slave ? MS_SLAVE : 0,
	};
	if (syscall(SYS_mount_setattr, AT_FDCWD, path, rec ? SB_AT_RECURSIVE : 0, &attr, sizeof(attr)) == 0) {
		return 0;
	}
	if (errno != ENOSYS) {
		return fail("make read-only (mount_setattr)", path, errno);
	}
	// Before Linux 5.12 a bind remount changes the top mount only, and
	// must repeat the atime flags: in a user namespace they may be locked.
	if (slave && mount(NULL, path, NULL, MS_SLAVE | (rec ? MS_REC : 0), NULL) != 0) {
		return fail("make slave", path, errno);
	}
	struct statvfs sv;
	if (statvfs(path, &sv) != 0) {
		return fail("statvfs", path, errno);
	}
	unsigned long atime = 0;
	if (sv.f_flag & ST_NOATIME) {
		atime |= MS_NOATIME;
	}
	if (sv.f_flag & ST_NODIRATIME) {
		atime |= MS_NODIRATIME;
	}
	if (sv.f_flag & ST_RELATIME) {
		atime |= MS_RELATIME;
	}
	if (mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | atime, NULL) != 0) {
		return fail("remount read-only", path, errno);
	}
	return 0;
}

// bind_tree binds the host directory src (with everything mounted below
// it) on dst, read-only. A missing src is skipped: dst stays empty.
static int bind_tree(const char *src, const char *dst) {
	if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) != 0) {
		if (errno == ENOENT) {
			return 0;
		}
		return fail("bind-mount", src, errno);
	}
	return restrict_mount(dst, 1, 1);
}

// apply_plan carries out the plan inside the new root, which is the
// current directory: paths lose their leading '/'.
static int apply_plan(const struct sandbox_plan *plan) {
	for (int i = 0; i < plan->n; i++) {
		const struct sandbox_plan_entry *e = &plan->e[i];
		const char *rel = e->path + 1;
		switch (e->kind) {
		case 'd':
			if (mkdir(rel, 0755) != 0 && errno != EEXIST) {
				return fail("make directory in the new root", e->path, errno);
			}
			break;
		case 'l':
			if (symlink(e->target, rel) != 0) {
				return fail("make symlink in the new root", e->path, errno);
			}
			break;
		case 'f': {
			if (e->fd < 0) {
				break; // gone, see make_root
			}
			int fd = open(rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
			if (fd < 0) {
				return fail("make mount point in the new root", e->path, errno);
			}
			close(fd);
			char src[32];
			snprintf(src, sizeof(src), "/proc/self/fd/%d", e->fd);
			if (mount(src, rel, NULL, MS_BIND, NULL) != 0) {
				return fail("bind-mount", e->path, errno);
			}
			if (restrict_mount(rel, 0, 1) != 0) {
				return -1;
			}
			break;
		}
		}
	}
	return 0;
}

// make_root replaces the root with a small read-only tmpfs holding /etc,
// /run (bound read-only from the host), a writable /tmp, and the plan's
// files, in a new mount namespace.
static int make_root(struct sandbox_plan *plan) {
	if (unshare(CLONE_NEWNS) != 0) {
		return fail("unshare", "CLONE_NEWNS", errno);
	}
	// Nothing done below may reach the caller's mounts, and unmounting
	// the old root must not unmount anything there (slirp4netns'
	// sandbox-no-unmount test). A slave still sees the caller's later
	// mounts and unmounts, so that, say, a network namespace unmounted
	// from the host's /run is not kept alive by our copy.
	if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) != 0) {
		return fail("make the mounts slaves", "/", errno);
	}
	// The files to keep are opened here: in the new namespace (a bind
	// mount's source must be in it) and before the new root hides /tmp.
	// The paths hold no symbolic link (the plan made them so). A file
	// gone since the plan was made is left out, as the plan leaves out
	// missing files: the daemon reports it when it reads it.
	for (int i = 0; i < plan->n; i++) {
		struct sandbox_plan_entry *e = &plan->e[i];
		if (e->kind == 'f') {
			e->fd = open(e->path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
			if (e->fd < 0 && errno != ENOENT) {
				return fail("open file to keep", e->path, errno);
			}
		}
	}
	if (mount("tmpfs", STAGE, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=1m,mode=0755") != 0) {
		return fail("mount tmpfs on", STAGE, errno);
	}
	if (chdir(STAGE) != 0) {
		return fail("chdir", STAGE, errno);
	}
	static const char *const dirs[] = {"etc", "run", "tmp"};
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		if (mkdir(dirs[i], 0755) != 0) {
			return fail("make directory in the new root", dirs[i], errno);
		}
	}
	if (mount("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=1m,mode=0700") != 0) {
		return fail("mount tmpfs on", "/tmp", errno);
	}
	if (apply_plan(plan) != 0) {
		return -1;
	}
	if (bind_tree("/etc", "etc") != 0 || bind_tree("/run", "run") != 0) {
		return -1;
	}
	// pivot_root(".", ".") stacks the old root on the new one; detaching
	// it leaves the new root alone, with no directory needed for the old.
	if (syscall(SYS_pivot_root, ".", ".") != 0) {
		return fail("pivot_root", STAGE, errno);
	}
	if (umount2(".", MNT_DETACH) != 0) {
		return fail("detach the old root", "/", errno);
	}
	if (chdir("/") != 0) {
		return fail("chdir", "/", errno);
	}
	return restrict_mount("/", 0, 0);
}

// drop_privileges keeps CAP_NET_BIND_SERVICE only, in every set, and makes
// sure no later execve could give anything back.
static int drop_privileges(void) {
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		return fail("prctl", "PR_SET_NO_NEW_PRIVS", errno);
	}
	// EINVAL: a kernel before 4.3 has no ambient capabilities.
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
		return fail("prctl", "PR_CAP_AMBIENT_CLEAR_ALL", errno);
	}
	for (int c = 0; c < 64; c++) {
		if (c == CAP_NET_BIND_SERVICE) {
			continue;
		}
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0) {
			if (errno == EINVAL) {
				break; // past the kernel's last capability
			}
			return fail("prctl", "PR_CAPBSET_DROP", errno);
		}
	}
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	data[0].effective = data[0].permitted = data[0].inheritable = 1u << CAP_NET_BIND_SERVICE;
	if (syscall(SYS_capset, &hdr, data) != 0) {
		return fail("capset", "CAP_NET_BIND_SERVICE", errno);
	}
	return 0;
}

__attribute__((constructor)) static void sandbox_constructor(void) {
	const char *plan_env = getenv(SANDBOX_ENV);
	const char *userns_env = getenv(SANDBOX_ENV_USERNS);
	if (plan_env == NULL && userns_env == NULL) {
		return;
	}
	outcome.asked = 1;

	// A setuid or file-capability binary must not let whoever runs it
	// steer it through the environment.
	if (getauxval(AT_SECURE) != 0) {
		unsetenv(SANDBOX_ENV);
		unsetenv(SANDBOX_ENV_USERNS);
		fail("refuse request in", "a setuid or setcap binary", EPERM);
		return;
	}
	if (plan_env == NULL) {
		unsetenv(SANDBOX_ENV_USERNS);
		fail("read " SANDBOX_ENV, "(missing: " SANDBOX_ENV_USERNS " alone is not a request)", EINVAL);
		return;
	}

	// Copy and parse before unsetenv, which may reuse the storage; then
	// remove the request so that nothing inherits it.
	static char userns_path[SANDBOX_PATH_MAX];
	if (userns_env != NULL) {
		snprintf(userns_path, sizeof(userns_path), "%s", userns_env);
	}
	struct sandbox_plan plan;
	int parsed = sandbox_plan_parse(plan_env, &plan, &outcome.failed);
	unsetenv(SANDBOX_ENV);
	unsetenv(SANDBOX_ENV_USERNS);
	if (parsed != 0) {
		sandbox_plan_free(&plan);
		return;
	}

	int ok = (userns_env == NULL || join_userns(userns_path) == 0) && make_root(&plan) == 0 &&
	         drop_privileges() == 0;
	for (int i = 0; i < plan.n; i++) {
		if (plan.e[i].fd >= 0) {
			close(plan.e[i].fd);
		}
	}
	sandbox_plan_free(&plan);
	outcome.done = ok;
}
