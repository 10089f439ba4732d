//go:build linux && cgo

// The constructor below runs when the dynamic loader initialises the
// program, before the Go runtime starts and so before it creates any thread.
// setns(CLONE_NEWUSER) refuses a multi-threaded caller with EINVAL, which is
// why the user namespace cannot be joined from Go code. runc's nsexec uses the
// same trick. See nsenter.go for the environment protocol.

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "nsenter.h"

static struct nsenter_outcome outcome;

const struct nsenter_outcome *nsenter_get_outcome(void) { return &outcome; }

static void record(struct nsenter_step *step, const char *op, const char *path, int err) {
	step->err = err;
	strncpy(step->op, op, sizeof(step->op) - 1);
	strncpy(step->path, path, sizeof(step->path) - 1);
}

// parse_fd accepts a plain decimal number of at most 9 digits, nothing else.
static int parse_fd(const char *s) {
	int n = 0;
	if (*s == '\0' || strlen(s) > 9) {
		return -1;
	}
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9') {
			return -1;
		}
		n = n * 10 + (*s - '0');
	}
	return n;
}

// close_from closes every descriptor >= first. close_range(2) needs Linux
// 5.9; older kernels fall back to walking /proc/self/fd.
static int close_from(int first) {
#ifdef SYS_close_range
	if (syscall(SYS_close_range, (unsigned int)first, ~0U, 0) == 0) {
		return 0;
	}
	if (errno != ENOSYS) {
		return -1;
	}
#endif
	DIR *dir = opendir("/proc/self/fd");
	if (dir == NULL) {
		return -1;
	}
	int self = dirfd(dir);
	struct dirent *d;
	while ((d = readdir(dir)) != NULL) {
		int fd = parse_fd(d->d_name);
		if (fd >= first && fd != self) {
			close(fd);
		}
	}
	closedir(dir);
	return 0;
}

// same_ns reports whether fd refers to the namespace at /proc/self/ns/<name>.
static int same_ns(int fd, const char *self_path) {
	struct stat a, b;
	if (fstat(fd, &a) != 0 || stat(self_path, &b) != 0) {
		return 0;
	}
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

__attribute__((constructor)) static void nsenter_constructor(void) {
	const char *user = getenv(NSENTER_ENV_USERNS);
	const char *net = getenv(NSENTER_ENV_NETNS);
	const char *close_env = getenv(NSENTER_ENV_CLOSE_FROM);
	if (user == NULL && net == NULL && close_env == NULL) {
		return;
	}
	outcome.asked = 1;

	// A setuid or file-capability binary must not let whoever runs it
	// choose namespaces (or descriptors) through the environment.
	if (getauxval(AT_SECURE) != 0) {
		unsetenv(NSENTER_ENV_USERNS);
		unsetenv(NSENTER_ENV_NETNS);
		unsetenv(NSENTER_ENV_CLOSE_FROM);
		record(&outcome.failed, "refuse request in", "a setuid or setcap binary", EPERM);
		return;
	}

	// Copy the values before unsetenv, which may reuse their storage, and
	// remove them so that nothing this process starts inherits the request.
	static char user_path[NSENTER_PATH_MAX], net_path[NSENTER_PATH_MAX], close_val[32];
	if (user != NULL) {
		strncpy(user_path, user, sizeof(user_path) - 1);
	}
	if (net != NULL) {
		strncpy(net_path, net, sizeof(net_path) - 1);
	}
	if (close_env != NULL) {
		strncpy(close_val, close_env, sizeof(close_val) - 1);
	}
	unsetenv(NSENTER_ENV_USERNS);
	unsetenv(NSENTER_ENV_NETNS);
	unsetenv(NSENTER_ENV_CLOSE_FROM);

	if (close_env != NULL) {
		int first = parse_fd(close_val);
		if (first < 3) {
			record(&outcome.failed, "parse " NSENTER_ENV_CLOSE_FROM, close_val, EINVAL);
			return;
		}
		if (close_from(first) != 0) {
			record(&outcome.failed, "close inherited descriptors", "/proc/self/fd", errno);
			return;
		}
	}

	// Open both files before joining anything: once in the target user
	// namespace we may no longer be allowed to open the second one. The
	// network namespace comes first so that a vanished process is reported
	// by its /proc/PID/ns/net path, as slirp4netns does.
	int netfd = -1, userfd = -1;
	if (user == NULL && net == NULL) {
		return;
	}
	if (net != NULL) {
		netfd = open(net_path, O_RDONLY | O_CLOEXEC);
		if (netfd < 0) {
			record(&outcome.failed, "open", net_path, errno);
			return;
		}
	}
	if (user != NULL) {
		userfd = open(user_path, O_RDONLY | O_CLOEXEC);
		if (userfd < 0) {
			record(&outcome.failed, "open", user_path, errno);
			goto out;
		}
		// Joining the user namespace we are already in fails with
		// EINVAL; there is nothing to join then.
		if (same_ns(userfd, "/proc/self/ns/user")) {
			outcome.userns_same = 1;
		} else if (setns(userfd, CLONE_NEWUSER) != 0) {
			// slirp4netns ignores a failed user namespace join; the
			// network namespace join below then decides.
			record(&outcome.userns_failed, "setns", user_path, errno);
		} else {
			outcome.joined_userns = 1;
		}
	}
	if (netfd >= 0) {
		if (setns(netfd, CLONE_NEWNET) != 0) {
			record(&outcome.failed, "setns", net_path, errno);
			goto out;
		}
		outcome.joined_netns = 1;
	}
out:
	if (netfd >= 0) {
		close(netfd);
	}
	if (userfd >= 0) {
		close(userfd);
	}
}
