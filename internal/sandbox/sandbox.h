// Shared between sandbox_linux.c and the cgo preamble in sandbox_cgo.go.
// sandbox.go documents the environment protocol.

#ifndef SLIRP_SANDBOX_H
#define SLIRP_SANDBOX_H

#define SANDBOX_ENV "_SLIRP_SANDBOX"
#define SANDBOX_ENV_USERNS "_SLIRP_SANDBOX_USERNS"

#define SANDBOX_PATH_MAX 4096
// SANDBOX_PLAN_MAX bounds the plan's entries and SANDBOX_PLAN_BYTES its
// encoded size; sandbox.go enforces the same limits.
#define SANDBOX_PLAN_MAX 64
#define SANDBOX_PLAN_BYTES 65536

// sandbox_step describes one failed step; err is 0 when nothing failed.
struct sandbox_step {
	int err;
	char op[128];
	char path[SANDBOX_PATH_MAX];
};

struct sandbox_outcome {
	int asked;         // the environment asked for the sandbox
	int joined_userns; // the process joined the requested user namespace
	int done;          // every step succeeded
	struct sandbox_step failed;
};

const struct sandbox_outcome *sandbox_get_outcome(void);

// One step of the plan that makes extra host files visible in the new root.
struct sandbox_plan_entry {
	char kind;          // 'd' directory, 'l' symlink, 'f' file bind
	int fd;             // 'f': the host file, opened by the constructor; else -1
	const char *path;   // absolute path inside the new root
	const char *target; // 'l': the symlink's target
};

struct sandbox_plan {
	int n;
	struct sandbox_plan_entry e[SANDBOX_PLAN_MAX];
	char *arena; // decoded strings; freed by sandbox_plan_free
};

// sandbox_plan_parse decodes text (see sandbox.go) into plan. It returns 0,
// or -1 with err describing the problem; plan must be freed either way.
int sandbox_plan_parse(const char *text, struct sandbox_plan *plan, struct sandbox_step *err);
void sandbox_plan_free(struct sandbox_plan *plan);

#endif
