package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/runtime/harden"
	"github.com/slirp-dev/slirp/runtime/idmap"
	"github.com/slirp-dev/slirp/runtime/image"
	"github.com/slirp-dev/slirp/runtime/netd"
	"github.com/slirp-dev/slirp/runtime/rootfs"
	"github.com/slirp-dev/slirp/runtime/spec"
	"github.com/slirp-dev/slirp/runtime/state"
)

// Stdio is where the container's standard streams go.
type Stdio struct {
	In, Out, Err *os.File
}

// ExitError carries the exit code for a launcher failure (125), or for a
// command that could not be executed (126, 127).
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

func fail(code int, err error) *ExitError { return &ExitError{Code: code, Err: err} }

// EnvCache overrides the default layer cache directory.
const EnvCache = "SLIRPRUN_CACHE"

// DefaultCacheRoot is $SLIRPRUN_CACHE, else $XDG_CACHE_HOME/slirprun, else
// ~/.cache/slirprun, else a per-user directory in /var/tmp.
func DefaultCacheRoot() string {
	if d := os.Getenv(EnvCache); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "slirprun")
	}
	if h, err := os.UserHomeDir(); err == nil {
		if st, err := os.Stat(h); err == nil && st.IsDir() && unix.Access(h, unix.W_OK) == nil {
			return filepath.Join(h, ".cache", "slirprun")
		}
	}
	return filepath.Join("/var/tmp", "slirprun-cache-"+strconv.Itoa(os.Getuid()))
}

// runState is one container run in progress.
type runState struct {
	o     Options
	log   *slog.Logger
	stdio Stdio
	store state.Store
	ctr   *state.Container
	rec   state.Record
	plan  idmap.Plan
	cs    childSpec
	pod   *podMember
	// started is called once the command runs (detached supervisors
	// report to their front end through it).
	started func(id string)
	// execed says the command was started.
	execed bool
}

// Run runs a container in the foreground and returns its exit code: the
// command's own, 128+N when a signal killed it, 125 when the launcher
// failed (the error says why), 126/127 when the command cannot run.
func Run(ctx context.Context, o Options, stdio Stdio, log *slog.Logger) (int, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Detach {
		return RunDetached(ctx, o, stdio, log)
	}
	return run(ctx, o, stdio, log, nil)
}

func run(ctx context.Context, o Options, stdio Stdio, log *slog.Logger, started func(string)) (int, error) {
	r := &runState{o: o, log: log, stdio: stdio, started: started}
	code, err := r.run(ctx)
	var ee *ExitError
	if err != nil && !errors.As(err, &ee) {
		err = fail(125, err)
	}
	return code, err
}

func (r *runState) run(ctx context.Context) (int, error) {
	if err := r.prepare(); err != nil {
		return 125, err
	}
	var err error
	r.ctr, err = r.store.Create(r.rec)
	if err != nil {
		return 125, err
	}
	watcher := r.startWatcher()
	code, err := r.runContainer(ctx)
	r.finish(code, err, r.execed)
	watcher.stop()
	return code, err
}

// finish records the exit, or removes the state directory. A detached
// container whose command never started leaves nothing: its start failed
// with an error and no id was printed.
func (r *runState) finish(code int, err error, execed bool) {
	if r.o.Detach && !r.o.Remove && execed {
		r.rec.Exited, r.rec.ExitCode, r.rec.Finished = true, code, time.Now()
		if err != nil {
			r.rec.ExitCode = 125
		}
		if werr := r.ctr.Write(r.rec); werr != nil {
			r.log.Warn("cannot record exit status", "err", werr)
		}
		r.ctr.Unlock()
		return
	}
	for _, d := range []string{"rootfs", "scratch"} {
		_ = os.Remove(filepath.Join(r.ctr.Dir, d))
	}
	if rerr := r.ctr.Remove(); rerr != nil {
		r.log.Warn("cannot remove state directory", "dir", r.ctr.Dir, "err", rerr)
	}
}

// prepare validates the options and resolves the image, user mapping and
// everything init will need.
func (r *runState) prepare() error {
	o := &r.o
	if o.Network == "" {
		o.Network = "slirp"
	}
	switch o.Network {
	case "slirp", "none":
	default:
		return fmt.Errorf("--network=%s: use slirp or none", o.Network)
	}
	if o.Network == "none" && len(o.Publish) > 0 {
		return errors.New("-p needs a network: drop --network=none")
	}
	if o.Rootfs != "" && o.Image != "" {
		return errors.New("give either --rootfs or --image, not both")
	}
	if o.TTY && o.Detach {
		return errors.New("-t cannot be combined with -d: a detached container has no terminal")
	}
	if o.Name != "" {
		if err := state.ValidName(o.Name); err != nil {
			return err
		}
	}
	if err := idmap.CheckKernel(); err != nil {
		return err
	}
	if o.StateRoot == "" {
		o.StateRoot = state.DefaultRoot()
	}
	if o.CacheRoot == "" {
		o.CacheRoot = DefaultCacheRoot()
	}
	r.store = state.Store{Root: o.StateRoot}
	id := o.ID
	if id == "" {
		id = state.NewID()
	}
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	name := strconv.Itoa(int(uid))
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	var err error
	if r.plan, err = idmap.NewPlan(o.UserNS, uid, gid, name, idmap.Files{}); err != nil {
		return err
	}

	cs := childSpec{
		Hostname: o.Hostname,
		Env:      o.Env,
		Workdir:  o.Workdir,
		Args:     o.Args,
		TTY:      o.TTY,
		Init:     o.Init,
		NNP:      !o.NoNewPrivsOff,
		Seccomp:  !o.SeccompOff,
		LogLevel: o.LogLevel,
		IDs:      r.plan,
	}
	if cs.Hostname == "" {
		cs.Hostname = id
	}
	if o.Pod != "" {
		if err := state.ValidName(o.Pod); err != nil {
			return fmt.Errorf("--pod: %w", err)
		}
		if o.Hostname == "" {
			cs.Hostname = o.Pod
		}
	}
	userStr := o.User
	switch {
	case o.Image != "":
		img, err := image.Open(o.Image)
		if err != nil {
			return err
		}
		entry := img.Config.Entrypoint
		if o.Entrypoint != nil {
			entry = nil
			if *o.Entrypoint != "" {
				entry = []string{*o.Entrypoint}
			}
		}
		args := o.Args
		if len(args) == 0 && o.Entrypoint == nil {
			args = img.Config.Cmd
		}
		cs.Args = append(slices.Clone(entry), args...)
		cs.Env = spec.MergeEnv(img.Config.Env, o.Env)
		if cs.Workdir == "" {
			cs.Workdir = img.Config.WorkingDir
		}
		if userStr == "" {
			userStr = img.Config.User
		}
		cs.Layers = img.Layers
		cs.CacheDir = filepath.Join(o.CacheRoot, "layers")
		if err := os.MkdirAll(cs.CacheDir, 0o700); err != nil {
			return fmt.Errorf("layer cache: %w", err)
		}
		cs.Rootfs.Kind = rootfs.Layers
		r.rec.Image = o.Image
	case o.Rootfs != "":
		dir, err := filepath.Abs(o.Rootfs)
		if err != nil {
			return err
		}
		st, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("--rootfs: %w", err)
		}
		if !st.IsDir() {
			return fmt.Errorf("--rootfs %s is not a directory", dir)
		}
		cs.Rootfs.Kind, cs.Rootfs.Dir = rootfs.Dir, dir
	default:
		cs.Rootfs.Kind = rootfs.Host
	}
	if o.Entrypoint != nil && o.Image == "" && *o.Entrypoint != "" {
		cs.Args = append([]string{*o.Entrypoint}, cs.Args...)
	}
	if len(cs.Args) == 0 {
		return errors.New("no command given (and no image Cmd/Entrypoint): slirprun [OPTIONS] [--rootfs DIR | --image PATH] [--] CMD [ARGS...]")
	}
	if userStr != "" {
		u, err := spec.ParseUser(userStr)
		if err != nil {
			return err
		}
		cs.User = u
	}
	for i, v := range o.Volumes {
		if _, err := os.Stat(v.Source); err != nil {
			return fmt.Errorf("volume %s: %w", v.Source, err)
		}
		abs, err := filepath.Abs(v.Source)
		if err != nil {
			return err
		}
		o.Volumes[i].Source = abs
	}
	cs.Rootfs.Volumes = o.Volumes
	cs.Rootfs.ReadOnly = o.ReadOnly
	cs.Rootfs.DevptsGID5 = idmap.Mapped(r.plan.GIDs, 5)
	caps, err := capSet(o.CapAdd, o.CapDrop)
	if err != nil {
		return err
	}
	cs.Caps = caps
	cs.Rootfs.Files = generatedFiles(cs.Hostname, o.Network != "none", o.IPv6)
	r.cs = cs
	r.rec = state.Record{
		ID: id, Name: o.Name, Pod: o.Pod, Command: cs.Args, Image: r.rec.Image,
		Created: time.Now(), Detached: o.Detach, AutoRemove: o.Remove, Supervisor: os.Getpid(),
	}
	return nil
}

// capSet is the default capability set with --cap-add and --cap-drop
// applied (names without the CAP_ prefix are accepted).
func capSet(add, drop []string) ([]string, error) {
	set := map[string]bool{}
	for _, c := range harden.DefaultCaps {
		set[c] = true
	}
	norm := func(c string) string {
		c = strings.ToUpper(strings.TrimSpace(c))
		if c != "ALL" && !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		return c
	}
	for _, c := range drop {
		if norm(c) == "ALL" {
			set = map[string]bool{}
			continue
		}
		delete(set, norm(c))
	}
	for _, c := range add {
		set[norm(c)] = true
	}
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	slices.Sort(out)
	if _, err := harden.ParseCaps(out); err != nil {
		return nil, err
	}
	return out, nil
}

// generatedFiles are the /etc files every container gets.
func generatedFiles(hostname string, networked, ipv6 bool) map[string][]byte {
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	resolv := "# no network (--network=none)\n"
	if networked {
		hosts += netd.GuestIP + "\t" + hostname + "\n" + netd.GatewayIP + "\thost.containers.internal host.docker.internal\n"
		resolv = "nameserver " + netd.DNSIP + "\n"
		if ipv6 {
			resolv += "nameserver fd00::3\n"
		}
	} else {
		hosts += "127.0.1.1\t" + hostname + "\n"
	}
	return map[string][]byte{
		"/etc/hosts":       []byte(hosts),
		"/etc/resolv.conf": []byte(resolv),
		"/etc/hostname":    []byte(hostname + "\n"),
	}
}

// child is the running container init.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startChild starts cmd from an OS thread that stays alive until the child
// exits: the parent-death signal fires when the creating thread exits, not
// the process.
func startChild(cmd *exec.Cmd) (*child, error) {
	c := &child{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		// Never unlocked: the thread ends with this goroutine, after the
		// child is gone.
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.err = cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return c, nil
}

func (c *child) exitCode() int {
	if c.cmd.ProcessState == nil {
		return 125
	}
	ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return c.cmd.ProcessState.ExitCode()
	}
	return statusCode(unix.WaitStatus(ws))
}

func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
}

func (r *runState) childCommand(ctrl *os.File) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	var cmd *exec.Cmd
	if r.pod != nil {
		cmd, err = r.pod.joinCommand(self)
		if err != nil {
			return nil, err
		}
	} else {
		cmd = exec.Command(self, roleInit)
		attr := &syscall.SysProcAttr{
			Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
				syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWNET | unix.CLONE_NEWCGROUP,
			Pdeathsig: syscall.SIGKILL,
			// A session of its own: terminal signals reach the launcher
			// only (it forwards them), and -t can give the container a
			// controlling terminal.
			Setsid: true,
		}
		if r.plan.Mode == idmap.Single {
			attr.UidMappings = idmap.SysProcIDMaps(r.plan.UIDs)
			attr.GidMappings = idmap.SysProcIDMaps(r.plan.GIDs)
			attr.GidMappingsEnableSetgroups = false
		}
		cmd.SysProcAttr = attr
	}
	cmd.ExtraFiles = []*os.File{ctrl}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r.stdio.In, r.stdio.Out, r.stdio.Err
	if r.o.TTY {
		cmd.Stdin = nil
	}
	return cmd, nil
}

// runContainer starts init and the network, runs the command and waits.
func (r *runState) runContainer(ctx context.Context) (int, error) {
	dir := r.ctr.Dir
	r.cs.Rootfs.Mountpoint = filepath.Join(dir, "rootfs")
	r.cs.Rootfs.Scratch = filepath.Join(dir, "scratch")
	for _, d := range []string{r.cs.Rootfs.Mountpoint, r.cs.Rootfs.Scratch} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return 125, fmt.Errorf("state dir: %w", err)
		}
	}
	if r.o.Pod != "" {
		pm, err := joinPod(ctx, r)
		if err != nil {
			return 125, err
		}
		defer pm.leave()
		r.pod = pm
		if len(r.o.Publish) > 0 && pm.info.APISocket == "" {
			return 125, fmt.Errorf("pod %s has no network (its first container used --network=none), so -p cannot publish", r.o.Pod)
		}
		r.cs.IDs = pm.info.Plan
		r.cs.Rootfs.DevptsGID5 = idmap.Mapped(pm.info.Plan.GIDs, 5)
	}

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)

	parentEnd, childEnd, err := socketpair()
	if err != nil {
		return 125, err
	}
	defer parentEnd.Close()
	ctrl := conn{f: parentEnd}
	cmd, err := r.childCommand(childEnd)
	if err != nil {
		childEnd.Close()
		return 125, err
	}
	ch, err := startChild(cmd)
	if errors.Is(err, syscall.EINVAL) && cmd.SysProcAttr.Cloneflags&unix.CLONE_NEWCGROUP != 0 {
		// A kernel without cgroup namespaces: go on without one.
		r.log.Warn("no cgroup namespace support; the container shares the host's cgroup view")
		cmd, err = r.childCommand(childEnd)
		if err == nil {
			cmd.SysProcAttr.Cloneflags &^= unix.CLONE_NEWCGROUP
			ch, err = startChild(cmd)
		}
	}
	childEnd.Close()
	if err != nil {
		return 125, fmt.Errorf("start container: %w%s", err, cloneHint(err))
	}
	ok := false
	defer func() {
		if !ok {
			ch.kill()
			<-ch.done
		}
	}()
	if r.pod == nil && r.plan.Mode == idmap.Subuid {
		if err := r.plan.Apply(cmd.Process.Pid, idmap.Files{}); err != nil {
			return 125, fmt.Errorf("--userns=subuid: %w", err)
		}
	}
	if err := ctrl.send(message{Type: msgMapped}); err != nil {
		return 125, err
	}
	if err := ctrl.send(message{Type: msgSpec, Spec: &r.cs}); err != nil {
		return 125, err
	}

	// The network namespace exists from clone on, so the daemon starts
	// while init builds the root filesystem.
	var daemon *netd.Daemon
	if r.o.Network == "slirp" && r.pod == nil {
		daemon, err = r.startNetwork(ctx, cmd.Process.Pid)
		if err != nil {
			return 125, err
		}
		defer daemon.Close()
	}
	apiSocket := r.rec.APISocket
	if r.pod != nil {
		apiSocket = r.pod.info.APISocket
		r.rec.APISocket = apiSocket
	}
	if err := r.publish(ctx, apiSocket); err != nil {
		return 125, err
	}
	if r.pod != nil {
		defer r.unpublish(apiSocket)
	}

	m, files, err := r.recvUntil(ctrl, sigs)
	if err != nil {
		return 125, err
	}
	switch m.Type {
	case msgReady:
	case msgError:
		<-ch.done
		ok = true
		return 125, fmt.Errorf("%s: %s", m.Stage, m.Msg)
	case msgExecFailed:
		<-ch.done
		ok = true
		return m.Code, fail(m.Code, errors.New(m.Msg))
	default:
		return 125, fmt.Errorf("container init sent %q, want ready", m.Type)
	}
	r.rec.Pid = cmd.Process.Pid
	if err := r.ctr.Write(r.rec); err != nil {
		return 125, err
	}
	var term *terminal
	if m.HasPTY {
		if len(files) != 1 {
			return 125, errors.New("container init did not pass the pseudo-terminal")
		}
		term, err = startTerminal(files[0], r.stdio, r.log)
		if err != nil {
			return 125, err
		}
		defer term.close()
	}
	if err := ctrl.send(message{Type: msgGo}); err != nil {
		return 125, err
	}
	m, _, err = ctrl.recv()
	var execErr error
	switch {
	case errors.Is(err, io.EOF):
		// exec succeeded (the socket is close-on-exec)
	case err != nil:
		return 125, err
	case m.Type == msgExecFailed:
		execErr = fail(m.Code, errors.New(m.Msg))
	case m.Type == msgError:
		execErr = fail(125, fmt.Errorf("%s: %s", m.Stage, m.Msg))
	}
	ok = true
	r.execed = execErr == nil
	if r.execed && r.started != nil {
		r.started(r.rec.ID)
	}
	for {
		select {
		case <-ch.done:
			if term != nil {
				term.drain()
			}
			code := ch.exitCode()
			if execErr != nil {
				var ee *ExitError
				if errors.As(execErr, &ee) {
					code = ee.Code
				}
			}
			return code, execErr
		case s := <-sigs:
			r.log.Debug("forwarding signal", "signal", s)
			_ = cmd.Process.Signal(s)
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGKILL)
		}
	}
}

// recvUntil waits for init's next message; a SIGINT, SIGTERM or SIGHUP
// before the command runs aborts the start (init would ignore them).
func (r *runState) recvUntil(ctrl conn, sigs chan os.Signal) (message, []*os.File, error) {
	type res struct {
		m     message
		files []*os.File
		err   error
	}
	done := make(chan res, 1)
	go func() {
		m, f, err := ctrl.recv()
		done <- res{m, f, err}
	}()
	for {
		select {
		case x := <-done:
			if errors.Is(x.err, io.EOF) {
				return message{}, nil, errors.New("container init exited during setup (see its messages above)")
			}
			return x.m, x.files, x.err
		case s := <-sigs:
			switch s {
			case syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP:
				// The deferred kill ends init; recv then sees EOF.
				return message{}, nil, fail(128+int(s.(syscall.Signal)), fmt.Errorf("interrupted by %v during setup", s))
			}
		}
	}
}

func cloneHint(err error) string {
	switch {
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return " (unprivileged user namespaces may be restricted: check kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns, or a seccomp profile of the calling container)"
	case errors.Is(err, syscall.ENOSPC):
		return " (user.max_user_namespaces reached, or nesting deeper than 32)"
	case errors.Is(err, syscall.EINVAL):
		return " (the kernel lacks a namespace type slirprun needs)"
	}
	return ""
}

// startNetwork starts the network daemon for init's namespaces.
func (r *runState) startNetwork(ctx context.Context, pid int) (*netd.Daemon, error) {
	bin, err := netd.FindBinary(r.o.SlirpBinary)
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(r.ctr.Dir, "api.sock")
	r.rec.APISocket = sock
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return netd.Start(cctx, netd.Config{
		Binary:            bin,
		UsernsPath:        fmt.Sprintf("/proc/%d/ns/user", pid),
		NetnsPath:         fmt.Sprintf("/proc/%d/ns/net", pid),
		APISocket:         sock,
		IPv6:              r.o.IPv6,
		AllowHostLoopback: r.o.AllowHostLoopback,
		LogFile:           filepath.Join(r.ctr.Dir, "slirp.log"),
		Log:               r.log,
	})
}

// publish adds the -p forwards through the daemon's API.
func (r *runState) publish(ctx context.Context, sock string) error {
	for _, p := range r.o.Publish {
		host := ""
		if p.HostIP.IsValid() {
			host = p.HostIP.String()
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		id, err := netd.AddHostfwd(cctx, sock, p.Proto, host, int(p.HostPort), int(p.ContainerPort))
		cancel()
		if err != nil {
			return fmt.Errorf("publish %s: %w (is the host port free?)", p, err)
		}
		r.rec.Ports = append(r.rec.Ports, state.Port{Publish: p, ID: id})
	}
	return nil
}

// unpublish removes this container's forwards from a shared (pod) daemon.
func (r *runState) unpublish(sock string) {
	for _, p := range r.rec.Ports {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := netd.RemoveHostfwd(ctx, sock, p.ID); err != nil {
			r.log.Debug("remove port forward", "port", p.Publish.String(), "err", err)
		}
		cancel()
	}
}

// watcher is a small process that outlives the launcher: when the launcher
// dies, even by SIGKILL, it removes the state directory the launcher could
// not remove (or records the exit of a detached container).
type watcher struct {
	cmd *exec.Cmd
	w   *os.File
}

func (r *runState) startWatcher() *watcher {
	self, err := os.Executable()
	if err != nil {
		return nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil
	}
	cmd := exec.Command(self, roleWatch, r.ctr.Dir)
	cmd.ExtraFiles = []*os.File{pr}
	// Its own session: a terminal's ^C must not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.log.Warn("cannot start cleanup watcher; a killed slirprun would leave its state directory", "err", err)
		pr.Close()
		pw.Close()
		return nil
	}
	pr.Close()
	return &watcher{cmd: cmd, w: pw}
}

func (w *watcher) stop() {
	if w == nil {
		return
	}
	w.w.Close()
	done := make(chan struct{})
	go func() {
		_ = w.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

// watchMain is the watcher: wait for the launcher to go away, then clean.
func watchMain(args []string) int {
	if len(args) != 1 {
		return 2
	}
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGQUIT)
	dir := args[0]
	_, _ = io.Copy(io.Discard, os.NewFile(3, "lifeline"))
	// The launcher is gone. Its lock goes with it, so wait for that too.
	if !state.WaitUnlocked(dir, 10*time.Second) {
		return 0
	}
	rec, err := state.Load(dir)
	if err != nil {
		return 0 // removed already: the normal case
	}
	if rec.Detached && !rec.AutoRemove {
		_ = state.MarkExited(dir, 128+int(syscall.SIGKILL))
		return 0
	}
	for _, d := range []string{"rootfs", "scratch"} {
		_ = os.Remove(filepath.Join(dir, d))
	}
	_ = os.RemoveAll(dir)
	return 0
}
