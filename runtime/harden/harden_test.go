package harden

import (
	"fmt"
	"os"
	"os/exec"
	goruntime "runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The test binary re-executes itself with this variable set to apply the
// hardening in a throw-away process and report what still works.
const childEnv = "HARDEN_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}

func child() int {
	goruntime.LockOSThread()
	keep, err := ParseCaps(DefaultCaps)
	if err != nil {
		fmt.Println("caps:", err)
		return 1
	}
	if err := DropBoundingSet(keep); err != nil {
		fmt.Println("drop:", err)
		return 1
	}
	if err := ApplyAfterUser(Options{NoNewPrivs: true, Seccomp: true}); err != nil {
		fmt.Println("apply:", err)
		return 1
	}
	fmt.Println("unshare:", unix.Unshare(unix.CLONE_NEWUSER))
	fmt.Println("keyctl:", errnoOf(unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_SESSION_KEYRING, 0, 0, 0)))
	_, _, e := unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0)
	fmt.Println("clone3:", e)
	nnp, _ := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	fmt.Println("nnp:", nnp)
	r, _ := unix.PrctlRetInt(unix.PR_CAPBSET_READ, unix.CAP_SYS_ADMIN, 0, 0, 0)
	k, _ := unix.PrctlRetInt(unix.PR_CAPBSET_READ, unix.CAP_NET_BIND_SERVICE, 0, 0, 0)
	fmt.Println("bnd sys_admin:", r, "net_bind_service:", k)
	fmt.Println("getpid works:", os.Getpid() > 0)
	return 0
}

func errnoOf(_ int, err error) error { return err }

func TestApplyInChild(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("dropping the bounding set needs CAP_SETPCAP (run as root)")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, want := range []string{
		"unshare: operation not permitted", "keyctl: operation not permitted",
		"clone3: function not implemented", "nnp: 1", "bnd sys_admin: 0 net_bind_service: 1", "getpid works: true",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output lacks %q:\n%s", want, out)
		}
	}
}

func TestParseCaps(t *testing.T) {
	set, err := ParseCaps([]string{"chown", "CAP_KILL", " net_bind_service "})
	if err != nil || len(set) != 3 || !set[unix.CAP_CHOWN] || !set[unix.CAP_KILL] || !set[unix.CAP_NET_BIND_SERVICE] {
		t.Fatalf("ParseCaps = %v, %v", set, err)
	}
	if all, _ := ParseCaps([]string{"ALL"}); !all[unix.CAP_SYS_ADMIN] {
		t.Error("ALL lacks CAP_SYS_ADMIN")
	}
	if _, err := ParseCaps([]string{"CAP_FLY"}); err == nil {
		t.Error("unknown capability accepted")
	}
}

func TestFilterAssembles(t *testing.T) {
	f, err := Filter()
	if err != nil {
		t.Fatal(err)
	}
	prog, err := f.Policy.Assemble()
	if err != nil || len(prog) < 20 {
		t.Fatalf("Assemble: %d instructions, %v", len(prog), err)
	}
	if p, err := foreignArchFilter(); err != nil || len(p) != 4 {
		t.Fatalf("foreignArchFilter: %v, %v", p, err)
	}
}
