// The minimal socket server of package sockserve: see sockserve.go for the
// protocol. It runs as a constructor, before the Go runtime, when
// _SLIRP_SOCKET_SERVER_FD is set, and never returns.

#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

enum { kind_open_tap = 1, kind_socket = 2, kind_keep_across_exec = 3, kind_slim = 4 };
enum { status_ok = 0, status_failed = 1 };

static uint32_t be32(const unsigned char *p) {
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put32(unsigned char *p, uint32_t v) {
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

// send_reply writes one reply, with fd attached when it is not -1. It
// returns -1 when the daemon is gone.
static int send_reply(int ctl, uint32_t id, int status, int err, const char *text, int fd) {
	unsigned char buf[9 + 256];
	size_t len = text ? strlen(text) : 0;
	if (len > 256)
		len = 256;
	put32(buf, id);
	buf[4] = (unsigned char)status;
	put32(buf + 5, (uint32_t)err);
	if (len)
		memcpy(buf + 9, text, len);
	struct iovec iov = {.iov_base = buf, .iov_len = 9 + len};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		memset(&control, 0, sizeof control);
		msg.msg_control = control.buf;
		msg.msg_controllen = sizeof control.buf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	for (;;) {
		if (sendmsg(ctl, &msg, MSG_NOSIGNAL) >= 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

static void fail(int ctl, uint32_t id, int err, const char *what) {
	char text[200];
	snprintf(text, sizeof text, "%s: %s", what, strerror(err));
	if (send_reply(ctl, id, status_failed, err, text, -1) < 0)
		_exit(0);
}

static void serve(int ctl) {
	unsigned char buf[256];
	for (;;) {
		struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
		ssize_t n = recvmsg(ctl, &msg, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(0); // EOF: the daemon is done with us
		if (n < 5) {
			fail(ctl, 0, EINVAL, "malformed request");
			continue;
		}
		uint32_t id = be32(buf + 1);
		switch (buf[0]) {
		case kind_socket: {
			if (n != 17 || (msg.msg_flags & MSG_TRUNC)) {
				fail(ctl, id, EINVAL, "malformed socket request");
				break;
			}
			int domain = (int)be32(buf + 5), type = (int)be32(buf + 9), proto = (int)be32(buf + 13);
			int fd = socket(domain, type | SOCK_CLOEXEC | SOCK_NONBLOCK, proto);
			if (fd < 0) {
				char what[64];
				snprintf(what, sizeof what, "socket(%d, %d, %d)", domain, type, proto);
				fail(ctl, id, errno, what);
				break;
			}
			int r = send_reply(ctl, id, status_ok, 0, NULL, fd);
			close(fd);
			if (r < 0)
				_exit(0);
			break;
		}
		case kind_keep_across_exec:
			if (n != 5) {
				fail(ctl, id, EINVAL, "malformed request");
				break;
			}
			if (prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0) < 0) {
				fail(ctl, id, errno, "prctl(PR_SET_PDEATHSIG, 0)");
				break;
			}
			if (send_reply(ctl, id, status_ok, 0, NULL, -1) < 0)
				_exit(0);
			break;
		case kind_slim: // already slim
			if (send_reply(ctl, id, status_ok, 0, NULL, -1) < 0)
				_exit(0);
			break;
		case kind_open_tap:
			fail(ctl, id, EOPNOTSUPP, "open a tap: this helper only creates sockets now (the daemon opens its tap once, at start)");
			break;
		default:
			fail(ctl, id, EINVAL, "unknown request");
		}
	}
}

__attribute__((constructor)) static void sockserve_init(void) {
	const char *v = getenv("_SLIRP_SOCKET_SERVER_FD");
	if (!v)
		return;
	char *end;
	long fd = strtol(v, &end, 10);
	if (*v == '\0' || *end != '\0' || fd < 0 || fd > 1 << 20)
		_exit(2);
	serve((int)fd);
}
