package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name string
		line string
		want procStat
	}{
		{"plain", "26386 (cat) R 26382 26382 10242 0 -1 4194304 102 0 0 0 7 3 0 0 20 0 1 0 248529 3133440 393 18446744073709551615",
			procStat{pid: 26386, comm: "cat", ppid: 26382, utime: 7, stime: 3}},
		{"name with spaces and parentheses", "42 (a) b (c)) S 1 42 42 0 -1 0 0 0 0 0 1234 567 0 0 20 0 9 0\n",
			procStat{pid: 42, comm: "a) b (c)", ppid: 1, utime: 1234, stime: 567}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.line))
			if err != nil {
				t.Fatalf("parseStat: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "12 cat R 1", "x (cat) R 1 1 1 0 -1 0 0 0 0 0 1 1", "1 (cat) R 1 1", "1 (cat) R 1 1 1 0 -1 0 0 0 0 0 u 1"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) succeeded, want an error", bad)
		}
	}
}

func TestParseStatOwnProcess(t *testing.T) {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	st, err := parseStat(data)
	if err != nil {
		t.Fatal(err)
	}
	if st.pid != os.Getpid() || st.ppid != os.Getppid() {
		t.Errorf("parsed pid %d ppid %d, want %d %d", st.pid, st.ppid, os.Getpid(), os.Getppid())
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tslirp\nVmPeak:\t  1000 kB\nVmRSS:\t    2180 kB\nRssAnon:\t 1000 kB\n"
	got, err := parseVmRSS([]byte(status))
	if err != nil || got != 2180*1024 {
		t.Fatalf("parseVmRSS = %d, %v; want %d", got, err, 2180*1024)
	}
	for _, bad := range []string{"Name:\tkthreadd\n", "VmRSS:\t12 MB\n", "VmRSS:\t-5 kB\n", "VmRSS:\tlots kB\n"} {
		if _, err := parseVmRSS([]byte(bad)); err == nil {
			t.Errorf("parseVmRSS(%q) succeeded, want an error", bad)
		}
	}
}

func TestHasListener(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1077 1 0 100 0 0 10 0
   1: 0100007F:9B38 0100007F:1451 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0
   2: 0100007F:1451 0100007F:9B38 01 00000000:00000000 00:00000000 00000000     0        0 0 3 0
`
	tests := []struct {
		port int
		want bool
	}{
		{0x07E8, true},  // listening on 0.0.0.0
		{0x1451, false}, // only an established connection
		{0x9B38, false}, // time-wait
		{80, false},
	}
	for _, tt := range tests {
		if got := hasListener([]byte(table), tt.port); got != tt.want {
			t.Errorf("hasListener(port %d) = %v, want %v", tt.port, got, tt.want)
		}
	}
	tcp6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1451 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0
`
	if !hasListener([]byte(tcp6), 5201) {
		t.Errorf("hasListener missed a tcp6 listener on 5201")
	}
}

func TestListeningAndWait(t *testing.T) {
	srv, err := listenTCP(1, func(net.Conn) {})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	port := srv.ports()[0]
	if err := waitListening(0, port, 0); err != nil {
		t.Errorf("waitListening on an open listener: %v", err)
	}
	free, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	if err := waitListening(0, free, 0); err == nil {
		t.Errorf("waitListening on free port %d succeeded", free)
	}
}

// TestTreeCPUAndRSS reads a real process tree: this test process and a
// child it starts.
func TestTreeCPUAndRSS(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skipf("no /proc: %v", err)
	}
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })

	tree, err := processTree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if tree[0] != os.Getpid() || !slices.Contains(tree, child.Process.Pid) {
		t.Errorf("processTree = %v, want this process first and child %d in it", tree, child.Process.Pid)
	}
	self, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	selfRSS, err := parseVmRSS(self)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := treeRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// The sum includes the child, so it is above this process's own RSS
	// as read a moment earlier (minus what it may shrink meanwhile).
	if sum < selfRSS/2 || sum <= 0 {
		t.Errorf("treeRSS = %d, own RSS %d", sum, selfRSS)
	}
	// Burn a little CPU so that there is something to count.
	x := 0
	for i := range 50_000_000 {
		x += i
	}
	_ = fmt.Sprint(x)
	cpu, err := treeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if cpu <= 0 {
		t.Errorf("treeCPU = %v after a busy loop, want > 0", cpu)
	}
	if _, err := treeCPU(1 << 30); err == nil || !strings.Contains(err.Error(), "daemon process") {
		t.Errorf("treeCPU of a missing process: %v", err)
	}
}
