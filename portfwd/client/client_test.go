package client

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// The client's calls are tested against a real server in portfwd/api; this
// tests what it says when there is no server to reach.
func TestUnreachableSocket(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")
	_, err := New(missing).Ports(context.Background())
	if err == nil || !strings.Contains(err.Error(), "is the daemon running with --api-socket "+missing+"?") {
		t.Errorf("missing socket: %v", err)
	}

	// A socket file nobody listens on any more (a daemon that was killed).
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	_, err = New(stale).Info(context.Background())
	if err == nil || !strings.Contains(err.Error(), "nothing listens on API socket") {
		t.Errorf("stale socket: %v", err)
	}
}
