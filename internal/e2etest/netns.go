package e2etest

import (
	"runtime"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/slirp-dev/slirp/internal/nstest"
)

// InNetns runs f with the calling thread inside ns, so that the sockets f
// opens live there. Root only.
func InNetns(t *testing.T, ns *nstest.Netns, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with the goroutine.
			panic(err)
		}
	}()
	f()
}
