package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

type sample struct {
	TCPActive int64  `json:"tcp_active"`
	TCPOpened uint64 `json:"tcp_opened"`
	Note      string `json:"note"`
	Hits      uint64
}

func TestWrite(t *testing.T) {
	var b strings.Builder
	err := Write(&b, []Source{{Name: "stack", Help: "user-mode stack", Get: func() any {
		return sample{TCPActive: 3, TCPOpened: 42, Note: "x", Hits: 7}
	}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# TYPE slirp_stack_tcp_active gauge\nslirp_stack_tcp_active 3\n",
		"# TYPE slirp_stack_tcp_opened_total counter\nslirp_stack_tcp_opened_total 42\n",
		"slirp_stack_hits_total 7\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "note") {
		t.Errorf("a string field became a metric:\n%s", b.String())
	}
}

func TestServeUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.sock")
	s, err := Listen(path, []Source{{Name: "x", Get: func() any { return sample{TCPOpened: 1} }}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	resp, err := c.Get("http://unix/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "slirp_x_tcp_opened_total 1") {
		t.Fatalf("body: %s", body)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("unix", path); err == nil {
		t.Fatal("socket still there after Close")
	}
}
