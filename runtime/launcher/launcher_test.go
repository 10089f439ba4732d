package launcher

import (
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCapSet(t *testing.T) {
	got, err := capSet([]string{"net_raw"}, []string{"CAP_KILL", "setfcap"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, "CAP_NET_RAW") || slices.Contains(got, "CAP_KILL") || slices.Contains(got, "CAP_SETFCAP") || !slices.Contains(got, "CAP_CHOWN") {
		t.Errorf("capSet = %v", got)
	}
	got, _ = capSet([]string{"chown"}, []string{"all"})
	if !slices.Equal(got, []string{"CAP_CHOWN"}) {
		t.Errorf("drop ALL, add chown = %v", got)
	}
	if _, err := capSet([]string{"bogus"}, nil); err == nil {
		t.Error("unknown capability accepted")
	}
}

func TestGeneratedFiles(t *testing.T) {
	f := generatedFiles("box", true, true)
	hosts := string(f["/etc/hosts"])
	for _, want := range []string{"127.0.0.1\tlocalhost", "10.0.2.100\tbox", "10.0.2.2\thost.containers.internal"} {
		if !strings.Contains(hosts, want) {
			t.Errorf("hosts lacks %q:\n%s", want, hosts)
		}
	}
	if got := string(f["/etc/resolv.conf"]); got != "nameserver 10.0.2.3\nnameserver fd00::3\n" {
		t.Errorf("resolv.conf = %q", got)
	}
	f = generatedFiles("box", false, false)
	if strings.Contains(string(f["/etc/hosts"]), "host.containers.internal") || strings.Contains(string(f["/etc/resolv.conf"]), "nameserver") {
		t.Errorf("--network=none files: %q %q", f["/etc/hosts"], f["/etc/resolv.conf"])
	}
}

func TestControlMessages(t *testing.T) {
	a, b, err := socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := (conn{f: a}).send(message{Type: msgReady, HasPTY: true}, int(w.Fd())); err != nil {
		t.Fatal(err)
	}
	w.Close()
	m, files, err := conn{f: b}.recv()
	if err != nil || m.Type != msgReady || !m.HasPTY || len(files) != 1 {
		t.Fatalf("recv = %+v, %d files, %v", m, len(files), err)
	}
	// The passed descriptor is the pipe's write end.
	if _, err := files[0].Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	files[0].Close()
	buf := make([]byte, 1)
	if n, _ := r.Read(buf); n != 1 || buf[0] != 'x' {
		t.Fatal("passed fd does not reach the pipe")
	}
	a.Close()
	if _, _, err := (conn{f: b}).recv(); err == nil || !strings.Contains(err.Error(), "EOF") {
		t.Errorf("recv after close = %v, want EOF", err)
	}
}

func TestStatusCode(t *testing.T) {
	for _, tc := range []struct {
		ws   unix.WaitStatus
		want int
	}{
		{unix.WaitStatus(7 << 8), 7},
		{unix.WaitStatus(unix.SIGTERM), 143},
		{unix.WaitStatus(unix.SIGKILL), 137},
	} {
		if got := statusCode(tc.ws); got != tc.want {
			t.Errorf("statusCode(%#x) = %d, want %d", tc.ws, got, tc.want)
		}
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	exe := dir + "/tool"
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(dir+"/plain", []byte("x"), 0o644)
	env := []string{"PATH=/nonexistent:" + dir}
	if p, err := lookPath("tool", env); err != nil || p != exe {
		t.Errorf("lookPath(tool) = %q, %v", p, err)
	}
	if _, err := lookPath("missing", env); execCode(err) != 127 {
		t.Errorf("missing: code %d (%v), want 127", execCode(err), err)
	}
	if _, err := lookPath("plain", env); execCode(err) != 126 {
		t.Errorf("not executable: code %d (%v), want 126", execCode(err), err)
	}
	if _, err := lookPath(dir+"/plain", env); execCode(err) != 126 {
		t.Errorf("path not executable: code %d (%v), want 126", execCode(err), err)
	}
}
