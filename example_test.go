package slirp_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/slirp-dev/slirp"
	"github.com/slirp-dev/slirp/netem"
)

func TestMain(m *testing.M) {
	// Start re-executes this binary as its namespace helper.
	slirp.HelperMain()
	os.Exit(m.Run())
}

// Example gives a namespace of the program's own its network, makes it slow,
// and reaches a server on the host's loopback from inside it, as a program
// in a container would.
func Example() {
	ctx := context.Background()

	// A user and network namespace, held by a sleeping child: what
	// `unshare --user --map-root-user --net sleep 60` makes.
	holder := exec.Command("sleep", "60")
	holder.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	if err := holder.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()

	// A server on the host's loopback.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			fmt.Fprint(c, "hello from the host")
			c.Close()
		}
	}()

	n, err := slirp.Start(ctx, slirp.Options{
		PID:               holder.Process.Pid,
		Configure:         true, // 10.0.2.100/24, default route via 10.0.2.2
		AllowHostLoopback: true, // 10.0.2.2 reaches the host's 127.0.0.1
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Close()

	// A slow network: 50 ms more on every packet to the guest.
	n.SetNetem(netem.Spec{Egress: netem.Impairment{Delay: 50 * time.Millisecond}})

	port := l.Addr().(*net.TCPAddr).Port
	start := time.Now()
	c, err := n.Dial(ctx, "tcp", fmt.Sprintf("10.0.2.2:%d", port))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	msg, _ := io.ReadAll(c)
	fmt.Println(string(msg))
	fmt.Println("slowed down:", time.Since(start) >= 50*time.Millisecond)
	fmt.Println("connections relayed:", n.Stats().Stack.TCPOpened)
	// Output:
	// hello from the host
	// slowed down: true
	// connections relayed: 1
}
