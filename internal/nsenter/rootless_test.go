package nsenter_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/nstest"
)

// newRootlessNetns is nstest.NewNetns(t, nstest.WithUserns(),
// nstest.AsUser(uid, gid)) without its race: nstest waits only until the
// holder has left our network namespace, but unshare(1) writes the uid and
// gid maps after that, and a join before then fails ("setgid failed:
// Invalid argument"). This waits for the maps too.
func newRootlessNetns(t *testing.T, uid, gid uint32) *nstest.Netns {
	t.Helper()
	nstest.RequireNamespaces(t)
	nstest.RequireTools(t, "unshare")
	cmd := exec.Command("unshare", "--user", "--map-root-user", "--net", "sleep", "infinity")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig:  syscall.SIGKILL,
		Setpgid:    true,
		Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}},
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start rootless namespace holder: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	pid := cmd.Process.Pid
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	ready := func() bool {
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil || ns == self {
			return false
		}
		for _, m := range []string{"uid_map", "gid_map"} {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, m))
			if err != nil || len(bytes.TrimSpace(b)) == 0 {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(10 * time.Second); !ready(); {
		if time.Now().After(deadline) {
			t.Fatalf("rootless namespace holder %d not set up within 10s", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	n := &nstest.Netns{
		PID:        pid,
		Path:       fmt.Sprintf("/proc/%d/ns/net", pid),
		UsernsPath: fmt.Sprintf("/proc/%d/ns/user", pid),
		OwnUserns:  true,
	}
	n.Run(t, "ip", "link", "set", "lo", "up")
	return n
}
