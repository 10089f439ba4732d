package launcher

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/runtime/idmap"
	"github.com/slirp-dev/slirp/runtime/netd"
)

// A pod is a set of containers sharing user, network, ipc and uts
// namespaces (and one network daemon), like a Kubernetes pod.
//
// The first `slirprun --pod NAME` starts the pod's supervisor ("__pod", in
// the host's namespaces, in its own session), which starts a holder process
// ("__pause") in the new namespaces and the network daemon for them, and
// listens on <state>/pods/NAME/pod.sock. Every member keeps a connection
// to that socket open while it runs; when the last one closes, the
// supervisor tears the pod down. Members enter the pod's namespaces with
// nsenter(1) (joining a user namespace needs a single-threaded process,
// which a Go program is not) and start their own init from there in a new
// mount and pid namespace. Joining and tearing down are serialised by a
// lock on the pods directory.

// podInfo is what a member learns when it joins.
type podInfo struct {
	Name      string     `json:"name"`
	PausePid  int        `json:"pause_pid"`
	APISocket string     `json:"api_socket,omitempty"`
	Plan      idmap.Plan `json:"plan"`
}

// podOptions configure a new pod (from its first member).
type podOptions struct {
	Name              string     `json:"name"`
	Dir               string     `json:"dir"`
	Plan              idmap.Plan `json:"plan"`
	Network           string     `json:"network"`
	IPv6              bool       `json:"ipv6,omitempty"`
	AllowHostLoopback bool       `json:"allow_host_loopback,omitempty"`
	SlirpBinary       string     `json:"slirp_binary,omitempty"`
	LogLevel          slog.Level `json:"log_level"`
}

type podMember struct {
	info    podInfo
	conn    net.Conn
	nsenter string
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return f, nil
}

// joinPod joins pod r.o.Pod, creating it first when it does not run.
func joinPod(ctx context.Context, r *runState) (*podMember, error) {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("--pod needs nsenter (util-linux) to enter the pod's namespaces: %w", err)
	}
	podsDir := filepath.Join(r.o.StateRoot, "pods")
	if err := os.MkdirAll(podsDir, 0o700); err != nil {
		return nil, fmt.Errorf("pod state: %w", err)
	}
	lock, err := lockDir(podsDir)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	dir := filepath.Join(podsDir, r.o.Pod)
	if c, info, err := dialPod(dir); err == nil {
		r.log.Debug("joined pod", "pod", r.o.Pod, "pause", info.PausePid)
		return &podMember{info: info, conn: c, nsenter: nsenter}, nil
	}
	// No live pod: clear what a dead one left, and start one.
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("remove stale pod state %s: %w", dir, err)
	}
	po := podOptions{
		Name: r.o.Pod, Dir: dir, Plan: r.plan, Network: r.o.Network, IPv6: r.o.IPv6,
		AllowHostLoopback: r.o.AllowHostLoopback, SlirpBinary: r.o.SlirpBinary, LogLevel: r.o.LogLevel,
	}
	if err := startPod(ctx, po); err != nil {
		return nil, err
	}
	c, info, err := dialPod(dir)
	if err != nil {
		return nil, fmt.Errorf("join new pod %s: %w", r.o.Pod, err)
	}
	r.log.Debug("created pod", "pod", r.o.Pod, "pause", info.PausePid)
	return &podMember{info: info, conn: c, nsenter: nsenter}, nil
}

func dialPod(dir string) (net.Conn, podInfo, error) {
	c, err := net.DialTimeout("unix", filepath.Join(dir, "pod.sock"), 5*time.Second)
	if err != nil {
		return nil, podInfo{}, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "join\n"); err != nil {
		c.Close()
		return nil, podInfo{}, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return nil, podInfo{}, fmt.Errorf("pod did not answer: %w", err)
	}
	var info podInfo
	if err := json.Unmarshal([]byte(line), &info); err != nil {
		c.Close()
		return nil, podInfo{}, fmt.Errorf("pod answer: %w", err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, info, nil
}

// joinCommand is the member's init, started through nsenter and
// __podjoin inside the pod's namespaces.
func (pm *podMember) joinCommand(self string) (*exec.Cmd, error) {
	t := strconv.Itoa(pm.info.PausePid)
	cmd := exec.Command(pm.nsenter, "--target", t, "--user", "--net", "--ipc", "--uts",
		"--preserve-credentials", "--", self, rolePodJoin, strconv.Itoa(os.Getpid()))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setsid: true}
	return cmd, nil
}

// leave ends the membership; the last member to leave ends the pod.
func (pm *podMember) leave() { pm.conn.Close() }

// startPod starts the pod supervisor and waits until it serves.
func startPod(ctx context.Context, po podOptions) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	optR, optW, err := os.Pipe()
	if err != nil {
		return err
	}
	statR, statW, err := os.Pipe()
	if err != nil {
		optR.Close()
		optW.Close()
		return err
	}
	defer statR.Close()
	cmd := exec.Command(self, rolePod)
	cmd.ExtraFiles = []*os.File{optR, statW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	optR.Close()
	statW.Close()
	if err != nil {
		optW.Close()
		return fmt.Errorf("start pod supervisor: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	err = json.NewEncoder(optW).Encode(po)
	optW.Close()
	if err != nil {
		return err
	}
	type res struct {
		line string
		err  error
	}
	done := make(chan res, 1)
	go func() {
		l, err := bufio.NewReader(statR).ReadString('\n')
		done <- res{l, err}
	}()
	select {
	case x := <-done:
		line := strings.TrimSpace(x.line)
		if line == "ok" {
			return nil
		}
		if msg, ok := strings.CutPrefix(line, "error "); ok {
			return fmt.Errorf("pod %s: %s", po.Name, msg)
		}
		return fmt.Errorf("pod %s: supervisor exited before it was ready: %v", po.Name, x.err)
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		return ctx.Err()
	}
}

// podMain is the pod supervisor.
func podMain([]string) int {
	status := os.NewFile(4, "status")
	var po podOptions
	if err := json.NewDecoder(os.NewFile(3, "options")).Decode(&po); err != nil {
		fmt.Fprintf(status, "error read options: %v\n", err)
		return 1
	}
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP)
	log := slog.New(slog.DiscardHandler)
	p := &pod{o: po, log: log}
	if err := p.start(); err != nil {
		p.teardown()
		fmt.Fprintf(status, "error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return 1
	}
	fmt.Fprintln(status, "ok")
	status.Close()
	p.serve()
	return 0
}

type pod struct {
	o        podOptions
	log      *slog.Logger
	pause    *child
	lifeline *os.File
	daemon   *netd.Daemon
	ln       net.Listener
	info     podInfo

	mu      sync.Mutex
	members int
	empty   chan struct{}
}

func (p *pod) start() error {
	if err := os.Mkdir(p.o.Dir, 0o700); err != nil {
		return fmt.Errorf("pod state: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		return err
	}
	p.lifeline = lifeW
	cmd := exec.Command(self, rolePause)
	cmd.ExtraFiles = []*os.File{lifeR}
	attr := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
		Pdeathsig:  syscall.SIGKILL,
	}
	if p.o.Plan.Mode == idmap.Single {
		attr.UidMappings = idmap.SysProcIDMaps(p.o.Plan.UIDs)
		attr.GidMappings = idmap.SysProcIDMaps(p.o.Plan.GIDs)
		attr.GidMappingsEnableSetgroups = false
	}
	cmd.SysProcAttr = attr
	p.pause, err = startChild(cmd)
	lifeR.Close()
	if err != nil {
		return fmt.Errorf("start pod namespaces: %w%s", err, cloneHint(err))
	}
	pid := cmd.Process.Pid
	if p.o.Plan.Mode == idmap.Subuid {
		if err := p.o.Plan.Apply(pid, idmap.Files{}); err != nil {
			return fmt.Errorf("--userns=subuid: %w", err)
		}
	}
	p.info = podInfo{Name: p.o.Name, PausePid: pid, Plan: p.o.Plan}
	if p.o.Network == "slirp" {
		bin, err := netd.FindBinary(p.o.SlirpBinary)
		if err != nil {
			return err
		}
		sock := filepath.Join(p.o.Dir, "api.sock")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p.daemon, err = netd.Start(ctx, netd.Config{
			Binary: bin, UsernsPath: fmt.Sprintf("/proc/%d/ns/user", pid), NetnsPath: fmt.Sprintf("/proc/%d/ns/net", pid),
			APISocket: sock, IPv6: p.o.IPv6, AllowHostLoopback: p.o.AllowHostLoopback,
			LogFile: filepath.Join(p.o.Dir, "slirp.log"), Log: p.log,
		})
		if err != nil {
			return err
		}
		p.info.APISocket = sock
	}
	p.ln, err = net.Listen("unix", filepath.Join(p.o.Dir, "pod.sock"))
	if err != nil {
		return fmt.Errorf("pod socket: %w", err)
	}
	b, _ := json.MarshalIndent(p.info, "", "  ")
	if err := os.WriteFile(filepath.Join(p.o.Dir, "pod.json"), b, 0o600); err != nil {
		return err
	}
	p.empty = make(chan struct{}, 1)
	return nil
}

// serve accepts members until the pod is empty, then tears it down.
func (p *pod) serve() {
	go func() {
		for {
			c, err := p.ln.Accept()
			if err != nil {
				return
			}
			go p.member(c)
		}
	}()
	// A pod nobody joins within a minute (its creator died) ends too.
	first := time.NewTimer(time.Minute)
	defer first.Stop()
	for {
		select {
		case <-p.empty:
		case <-first.C:
		case <-p.pause.done:
			p.teardown()
			return
		}
		if p.tryTeardown() {
			return
		}
	}
}

func (p *pod) member(c net.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "join" {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	b, _ := json.Marshal(p.info)
	p.mu.Lock()
	p.members++
	p.mu.Unlock()
	if _, err := c.Write(append(b, '\n')); err == nil {
		// Membership lasts until the member closes its end.
		_, _ = io.Copy(io.Discard, br)
	}
	p.mu.Lock()
	p.members--
	n := p.members
	p.mu.Unlock()
	if n == 0 {
		select {
		case p.empty <- struct{}{}:
		default:
		}
	}
}

// tryTeardown ends the pod if it has no members, under the pods-directory
// lock so that nobody joins while it goes away.
func (p *pod) tryTeardown() bool {
	lock, err := lockDir(filepath.Dir(p.o.Dir))
	if err == nil {
		defer lock.Close()
	}
	p.mu.Lock()
	n := p.members
	p.mu.Unlock()
	if n > 0 {
		return false
	}
	p.teardown()
	return true
}

func (p *pod) teardown() {
	if p.ln != nil {
		p.ln.Close()
	}
	if p.daemon != nil {
		p.daemon.Close()
	}
	if p.lifeline != nil {
		p.lifeline.Close()
	}
	if p.pause != nil {
		p.pause.kill()
		<-p.pause.done
	}
	_ = os.RemoveAll(p.o.Dir)
}

// pauseMain holds the pod's namespaces until the supervisor closes fd 3.
func pauseMain() int {
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP, syscall.SIGTERM)
	_, _ = io.Copy(io.Discard, os.NewFile(3, "lifeline"))
	return 0
}

// podJoinMain runs inside the pod's user, net, ipc and uts namespaces
// (entered by nsenter) and starts the member's init in a new mount and pid
// namespace, relaying signals to it and its exit status back.
func podJoinMain(args []string) int {
	// Entering the user namespace changed our credentials, which cleared
	// the parent-death signal: re-arm it and check the launcher is alive.
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	if len(args) != 1 || strconv.Itoa(os.Getppid()) != args[0] {
		return 125
	}
	ctrl := os.NewFile(3, "ctrl")
	self, err := os.Executable()
	if err != nil {
		return 125
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwardedSignals...)
	cmd := exec.Command(self, roleInit)
	cmd.ExtraFiles = []*os.File{ctrl}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | unix.CLONE_NEWCGROUP,
		Pdeathsig:  syscall.SIGKILL,
	}
	ch, err := startChild(cmd)
	if err != nil {
		_ = conn{f: ctrl}.send(message{Type: msgError, Stage: "start pod member", Msg: err.Error()})
		return 125
	}
	ctrl.Close()
	for {
		select {
		case <-ch.done:
			return ch.exitCode()
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		}
	}
}
