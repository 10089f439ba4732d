package nsenter_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/slirp-dev/slirp/internal/nsenter"
	"github.com/slirp-dev/slirp/internal/nstest"
)

// envReport makes the re-executed test binary print a report of what the
// constructor did instead of running the tests.
const envReport = "NSENTER_TEST_REPORT"

func TestMain(m *testing.M) {
	if os.Getenv(envReport) != "" {
		os.Exit(writeReport(os.Stdout))
	}
	// A race-enabled program sleeps a second before it exits, to catch
	// late reports; the children (this binary) need not.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	os.Exit(m.Run())
}

// report is what a re-executed child saw after the constructor ran.
type report struct {
	Asked         bool
	JoinedUserns  bool
	JoinedNetns   bool
	UsernsWasOurs bool
	UsernsErr     string
	Err           string
	Errno         int
	Netns         string            // readlink /proc/self/ns/net
	Userns        string            // readlink /proc/self/ns/user
	Leftover      []string          // _SLIRP_NSENTER_* entries still in the environment
	FDs           map[string]string // open descriptors and what they point at
}

func writeReport(w io.Writer) int {
	o := nsenter.Started()
	r := report{
		Asked:         o.Asked,
		JoinedUserns:  o.JoinedUserns,
		JoinedNetns:   o.JoinedNetns,
		UsernsWasOurs: o.UsernsWasOurs,
		FDs:           map[string]string{},
	}
	if o.UsernsErr != nil {
		r.UsernsErr = o.UsernsErr.Error()
	}
	if o.Err != nil {
		r.Err = o.Err.Error()
		var errno syscall.Errno
		if errors.As(o.Err, &errno) {
			r.Errno = int(errno)
		}
	}
	r.Netns, _ = os.Readlink("/proc/self/ns/net")
	r.Userns, _ = os.Readlink("/proc/self/ns/user")
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "_SLIRP_NSENTER_") {
			r.Leftover = append(r.Leftover, kv)
		}
	}
	for _, k := range []string{nsenter.EnvUserns, nsenter.EnvNetns, nsenter.EnvCloseFrom} {
		if v, ok := os.LookupEnv(k); ok {
			r.Leftover = append(r.Leftover, "Getenv "+k+"="+v)
		}
	}
	entries, _ := os.ReadDir("/proc/self/fd")
	for _, e := range entries {
		link, _ := os.Readlink("/proc/self/fd/" + e.Name())
		r.FDs[e.Name()] = link
	}
	if err := json.NewEncoder(w).Encode(r); err != nil {
		return 1
	}
	return 0
}

// runChild re-executes the test binary (or exe, when set) with the request
// and extra environment and returns its report.
func runChild(t *testing.T, exe string, req nsenter.Request, cred *syscall.Credential, extraEnv []string, extraFiles ...*os.File) report {
	t.Helper()
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(append(os.Environ(), envReport+"=1"), req.Env()...), extraEnv...)
	cmd.ExtraFiles = extraFiles
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v: %s", err, stderr.String())
	}
	var r report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("decode child report %q: %v (stderr %s)", stdout.String(), err, stderr.String())
	}
	return r
}

func nsLink(t *testing.T, path string) string {
	t.Helper()
	l, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestNotAsked(t *testing.T) {
	if o := nsenter.Started(); o.Asked || o.Err != nil || o.JoinedNetns || o.JoinedUserns {
		t.Fatalf("Started() in the test process = %+v, want nothing asked", o)
	}
	r := runChild(t, "", nsenter.Request{}, nil, nil)
	if r.Asked || r.Err != "" {
		t.Fatalf("child without request: %+v", r)
	}
	if want := nsLink(t, "/proc/self/ns/net"); r.Netns != want {
		t.Fatalf("child netns = %s, want ours %s", r.Netns, want)
	}
}

func TestRequestEnv(t *testing.T) {
	if env := (nsenter.Request{}).Env(); env != nil {
		t.Fatalf("empty request Env() = %q, want nil", env)
	}
	got := nsenter.Request{UsernsPath: "/u", NetnsPath: "/n", CloseFrom: 4}.Env()
	want := []string{"_SLIRP_NSENTER_CLOSE_FROM=4", "_SLIRP_NSENTER_USERNS=/u", "_SLIRP_NSENTER_NETNS=/n"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("Env() = %q, want %q", got, want)
	}
}

func TestStrerror(t *testing.T) {
	for errno, want := range map[syscall.Errno]string{
		syscall.ENOENT: "No such file or directory",
		syscall.EBUSY:  "Device or resource busy",
		syscall.EINVAL: "Invalid argument",
		syscall.EPERM:  "Operation not permitted",
	} {
		if got := nsenter.Strerror(errno); got != want {
			t.Errorf("Strerror(%d) = %q, want %q", errno, got, want)
		}
	}
}

func TestNSJoinNetns(t *testing.T) {
	ns := nstest.NewNetns(t)
	r := runChild(t, "", nsenter.Request{NetnsPath: ns.Path}, nil, nil)
	if r.Err != "" || !r.JoinedNetns || r.JoinedUserns {
		t.Fatalf("report = %+v, want only the netns joined", r)
	}
	if want := nsLink(t, ns.Path); r.Netns != want {
		t.Fatalf("child netns = %s, want %s", r.Netns, want)
	}
	if want := nsLink(t, "/proc/self/ns/user"); r.Userns != want {
		t.Fatalf("child userns = %s, want ours %s", r.Userns, want)
	}
	if len(r.Leftover) != 0 {
		t.Fatalf("request left in the child's environment: %q", r.Leftover)
	}
}

func TestNSJoinUsernsAndNetns(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.NewNetns(t, nstest.WithUserns())
	r := runChild(t, "", nsenter.Request{UsernsPath: ns.UsernsPath, NetnsPath: ns.Path}, nil, nil)
	if r.Err != "" || r.UsernsErr != "" || !r.JoinedNetns || !r.JoinedUserns {
		t.Fatalf("report = %+v, want both joined", r)
	}
	if want := nsLink(t, ns.UsernsPath); r.Userns != want {
		t.Fatalf("child userns = %s, want %s", r.Userns, want)
	}
	if want := nsLink(t, ns.Path); r.Netns != want {
		t.Fatalf("child netns = %s, want %s", r.Netns, want)
	}
	if len(r.Leftover) != 0 {
		t.Fatalf("request left in the child's environment: %q", r.Leftover)
	}
}

// Joining the user namespace one is already in fails with EINVAL; the
// constructor must notice and skip it, as slirp4netns ignores the error.
func TestNSOwnUsernsSkipped(t *testing.T) {
	ns := nstest.NewNetns(t)
	r := runChild(t, "", nsenter.Request{UsernsPath: ns.UsernsPath, NetnsPath: ns.Path}, nil, nil)
	if r.Err != "" || r.UsernsErr != "" || !r.UsernsWasOurs || r.JoinedUserns || !r.JoinedNetns {
		t.Fatalf("report = %+v, want own userns skipped and netns joined", r)
	}
}

func TestMissingNetns(t *testing.T) {
	pid := missingPID(t)
	path := fmt.Sprintf("/proc/%d/ns/net", pid)
	r := runChild(t, "", nsenter.Request{UsernsPath: fmt.Sprintf("/proc/%d/ns/user", pid), NetnsPath: path}, nil, nil)
	want := "open " + path + ": No such file or directory"
	if r.Err != want || r.Errno != int(syscall.ENOENT) || r.JoinedNetns || r.JoinedUserns {
		t.Fatalf("report = %+v, want error %q", r, want)
	}
	if want := nsLink(t, "/proc/self/ns/net"); r.Netns != want {
		t.Fatalf("child netns after failure = %s, want ours %s", r.Netns, want)
	}
}

// missingPID returns a PID that cannot exist: PIDs are below pid_max.
func missingPID(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCloseFrom(t *testing.T) {
	dir := t.TempDir()
	open := func(name string) *os.File {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	keep, drop1, drop2 := open("keep"), open("drop1"), open("drop2")
	r := runChild(t, "", nsenter.Request{CloseFrom: 4}, nil, nil, keep, drop1, drop2)
	if r.Err != "" || !r.Asked {
		t.Fatalf("report = %+v", r)
	}
	if r.FDs["3"] != keep.Name() {
		t.Errorf("fd 3 = %q, want %s kept", r.FDs["3"], keep.Name())
	}
	for fd, link := range r.FDs {
		if link == drop1.Name() || link == drop2.Name() {
			t.Errorf("fd %s still open on %s", fd, link)
		}
	}
}

func TestBadCloseFrom(t *testing.T) {
	for _, v := range []string{"abc", "2", "", "-5", "1234567890"} {
		r := runChild(t, "", nsenter.Request{}, nil, []string{nsenter.EnvCloseFrom + "=" + v})
		if !r.Asked || r.Errno != int(syscall.EINVAL) || !strings.Contains(r.Err, nsenter.EnvCloseFrom) {
			t.Errorf("%s=%q: report = %+v, want EINVAL naming the variable", nsenter.EnvCloseFrom, v, r)
		}
		if len(r.Leftover) != 0 {
			t.Errorf("%s=%q: request left in the environment: %q", nsenter.EnvCloseFrom, v, r.Leftover)
		}
	}
}

// An unprivileged user joins the user and network namespaces it created
// with `unshare -Urn`, the rootless case.
func TestNSUnprivilegedJoin(t *testing.T) {
	uid, gid := nstest.UnprivilegedUser(t)
	ns := nstest.NewNetns(t, nstest.WithUserns(), nstest.AsUser(uid, gid))
	exe := nstest.CopyTestBinary(t)
	cred := &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}
	r := runChild(t, exe, nsenter.Request{UsernsPath: ns.UsernsPath, NetnsPath: ns.Path}, cred, nil)
	if r.Err != "" || r.UsernsErr != "" || !r.JoinedUserns || !r.JoinedNetns {
		t.Fatalf("report = %+v, want both joined", r)
	}
	if want := nsLink(t, ns.Path); r.Netns != want {
		t.Fatalf("child netns = %s, want %s", r.Netns, want)
	}
	if want := nsLink(t, ns.UsernsPath); r.Userns != want {
		t.Fatalf("child userns = %s, want %s", r.Userns, want)
	}
}

// An unprivileged user may not even open the namespaces of root's processes.
func TestNSUnprivilegedDenied(t *testing.T) {
	uid, gid := nstest.UnprivilegedUser(t)
	ns := nstest.NewNetns(t, nstest.WithUserns())
	exe := nstest.CopyTestBinary(t)
	cred := &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}
	r := runChild(t, exe, nsenter.Request{UsernsPath: ns.UsernsPath, NetnsPath: ns.Path}, cred, nil)
	if want := "open " + ns.Path + ": Permission denied"; r.Err != want || r.JoinedUserns || r.JoinedNetns {
		t.Fatalf("report = %+v, want error %q", r, want)
	}
}

// Without its user namespace, the unprivileged user may open but not join
// its own network namespace: the kernel wants CAP_SYS_ADMIN in the user
// namespace that owns it.
func TestNSUnprivilegedNetnsOnly(t *testing.T) {
	uid, gid := nstest.UnprivilegedUser(t)
	ns := nstest.NewNetns(t, nstest.WithUserns(), nstest.AsUser(uid, gid))
	exe := nstest.CopyTestBinary(t)
	cred := &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}
	r := runChild(t, exe, nsenter.Request{NetnsPath: ns.Path}, cred, nil)
	if want := "setns " + ns.Path + ": Operation not permitted"; r.Err != want || r.Errno != int(syscall.EPERM) || r.JoinedNetns {
		t.Fatalf("report = %+v, want error %q", r, want)
	}
}

// A setgid copy of the binary runs with AT_SECURE; the constructor must not
// let the environment of whoever runs it steer it.
func TestNSSecureExecRefuses(t *testing.T) {
	uid, gid := nstest.UnprivilegedUser(t)
	ns := nstest.NewNetns(t)
	exe := nstest.CopyTestBinary(t)
	var st syscall.Statfs_t
	if err := syscall.Statfs(exe, &st); err != nil {
		t.Fatal(err)
	}
	if st.Flags&0x2 != 0 { // ST_NOSUID
		t.Skipf("%s is on a nosuid mount; cannot make a setgid binary there", filepath.Dir(exe))
	}
	if err := os.Chown(exe, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(exe, 0o755|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	cred := &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}
	r := runChild(t, exe, nsenter.Request{NetnsPath: ns.Path}, cred, nil)
	if r.JoinedNetns || r.Errno != int(syscall.EPERM) || !strings.Contains(r.Err, "setuid or setcap") {
		t.Fatalf("report = %+v, want the request refused", r)
	}
	if len(r.Leftover) != 0 {
		t.Fatalf("request left in the environment: %q", r.Leftover)
	}
}
