// Shared between nsenter_linux.c and the cgo preamble in nsenter_cgo.go.

#ifndef SLIRP_NSENTER_H
#define SLIRP_NSENTER_H

#define NSENTER_ENV_USERNS "_SLIRP_NSENTER_USERNS"
#define NSENTER_ENV_NETNS "_SLIRP_NSENTER_NETNS"
#define NSENTER_ENV_CLOSE_FROM "_SLIRP_NSENTER_CLOSE_FROM"
#define NSENTER_PATH_MAX 4096

// nsenter_step describes one failed step; err is 0 when nothing failed.
struct nsenter_step {
	int err;
	char op[64];
	char path[NSENTER_PATH_MAX];
};

struct nsenter_outcome {
	int asked;
	int joined_userns;
	int joined_netns;
	int userns_same;
	struct nsenter_step userns_failed;
	struct nsenter_step failed;
};

const struct nsenter_outcome *nsenter_get_outcome(void);

#endif
