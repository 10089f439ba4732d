// Package launcher runs rootless containers: it is the logic behind the
// slirprun command.
//
// One binary plays several roles, chosen by a hidden first argument before
// any flag parsing (see Role): the launcher itself (the supervising process
// in the host's namespaces), the container's init ("__init": PID 1 in new
// user, mount, pid, uts, ipc, net and cgroup namespaces), the exec stage of
// --init ("__exec"), a cleanup watcher ("__watch"), the supervisor of a
// detached container ("__supervise"), a pod's supervisor and namespace
// holder ("__pod", "__pause") and a pod member's namespace joiner
// ("__podjoin").
//
// The launcher and init talk over a SOCK_SEQPACKET socket: the launcher
// sends the spec, init builds the root filesystem and reports ready, the
// launcher starts the network daemon and publishes ports, then tells init
// to exec. The socket is close-on-exec, so a successful exec shows up as
// EOF.
package launcher

import (
	"log/slog"

	"github.com/slirp-dev/slirp/runtime/idmap"
	"github.com/slirp-dev/slirp/runtime/spec"
)

// Options is one `slirprun run`.
type Options struct {
	Name string `json:"name,omitempty"`
	// Rootfs is a directory to use as the root (--rootfs).
	Rootfs string `json:"rootfs,omitempty"`
	// Image is an OCI layout or skopeo dir: folder, PATH[:TAG] (--image).
	Image    string `json:"image,omitempty"`
	ReadOnly bool   `json:"read_only,omitempty"`
	// Args replaces the image's Cmd.
	Args []string `json:"args,omitempty"`
	// Entrypoint replaces the image's Entrypoint when set.
	Entrypoint *string `json:"entrypoint,omitempty"`
	// Env is KEY=VAL, applied over the image's Env.
	Env      []string       `json:"env,omitempty"`
	Workdir  string         `json:"workdir,omitempty"`
	User     string         `json:"user,omitempty"`
	Hostname string         `json:"hostname,omitempty"`
	Volumes  []spec.Volume  `json:"volumes,omitempty"`
	Publish  []spec.Publish `json:"publish,omitempty"`
	// Network is "slirp" (default) or "none".
	Network           string     `json:"network,omitempty"`
	IPv6              bool       `json:"ipv6,omitempty"`
	AllowHostLoopback bool       `json:"allow_host_loopback,omitempty"`
	SlirpBinary       string     `json:"slirp_binary,omitempty"`
	UserNS            idmap.Mode `json:"userns,omitempty"`
	TTY               bool       `json:"tty,omitempty"`
	Detach            bool       `json:"detach,omitempty"`
	// Remove deletes a detached container's state when it exits.
	Remove bool   `json:"remove,omitempty"`
	Init   bool   `json:"init,omitempty"`
	Pod    string `json:"pod,omitempty"`
	// CapAdd and CapDrop adjust the default capability set.
	CapAdd  []string `json:"cap_add,omitempty"`
	CapDrop []string `json:"cap_drop,omitempty"`
	// NoNewPrivs and Seccomp are on unless turned off.
	NoNewPrivsOff bool `json:"no_new_privs_off,omitempty"`
	SeccompOff    bool `json:"seccomp_off,omitempty"`
	// StateRoot holds per-container state (default state.DefaultRoot).
	StateRoot string `json:"state_root,omitempty"`
	// CacheRoot holds the unpacked-layer cache (default DefaultCacheRoot).
	CacheRoot string     `json:"cache_root,omitempty"`
	LogLevel  slog.Level `json:"log_level,omitempty"`

	// ID is the container id to use; empty means a new random one. The
	// detached front end sets it, so that it can print it.
	ID string `json:"id,omitempty"`
}
