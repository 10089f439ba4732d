package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseOptionsDefaults(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.iperfTime != 10*time.Second || o.rounds != 1 || o.out != "" || o.idleConns != 1000 {
		t.Errorf("defaults %+v", o)
	}
	if !slices.Equal(o.mtus, []int{65520, 1500}) {
		t.Errorf("mtus %v", o.mtus)
	}
	if !slices.Equal(o.impls, implNames) || len(o.workloads) != len(workloadNames) {
		t.Errorf("impls %v workloads %v", o.impls, o.workloads)
	}
}

func TestParseOptions(t *testing.T) {
	o, err := parseOptions([]string{"-time", "3s", "-mtu", "1500", "-only", "pasta,g2h,slirp,latency", "-out", "x.md", "-rounds", "3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.iperfTime != 3*time.Second || o.out != "x.md" || o.rounds != 3 || !slices.Equal(o.mtus, []int{1500}) {
		t.Errorf("options %+v", o)
	}
	if !slices.Equal(o.impls, []string{ours, pasta}) {
		t.Errorf("impls %v, want the table's order", o.impls)
	}
	if len(o.workloads) != 2 || !o.workloads["g2h"] || !o.workloads["latency"] {
		t.Errorf("workloads %v", o.workloads)
	}
}

func TestParseOptionsErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-only", "vpnkit"}, `unknown name "vpnkit"`},
		{[]string{"-mtu", "70000"}, "not an MTU"},
		{[]string{"-mtu", "65520,big"}, "not an MTU"},
		{[]string{"-time", "500ms"}, "-time must be at least 1s"},
		{[]string{"-rounds", "0"}, "-rounds must be positive"},
		{[]string{"-log-level", "loud"}, "-log-level"},
		{[]string{"extra"}, "unexpected arguments"},
	}
	for _, tt := range tests {
		_, err := parseOptions(tt.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseOptions(%q) = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
}

func TestParseOnly(t *testing.T) {
	impls, w, err := parseOnly(" slirp4netns , fwd,fwd,")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(impls, []string{slirp4netns}) || len(w) != 1 || !w["fwd"] {
		t.Errorf("parseOnly = %v %v", impls, w)
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"pasta", "--tcp-ports", "127.0.0.1/$FWD_PORT:5201", "a b", "it's", ""})
	want := `pasta --tcp-ports 127.0.0.1/$FWD_PORT:5201 'a b' 'it'\''s' ''`
	if got != want {
		t.Errorf("shellJoin = %s, want %s", got, want)
	}
}

func TestCommandLines(t *testing.T) {
	req := startRequest{target: "$PID", mtu: 1500, dir: "$DIR", fwdHostPort: "$FWD_PORT", fwdGuestPort: "5201"}
	got := shellJoin(slirp4netnsArgs("slirp", req))
	if got != "slirp --configure --mtu=1500 --api-socket=$DIR/api.sock --ready-fd=3 $PID tap0" {
		t.Errorf("slirp4netns command line: %s", got)
	}
	got = shellJoin(pastaArgs("/usr/bin/pasta", req))
	for _, want := range []string{"--runas 0", "--config-net", "--mtu 1500", "--gateway 10.0.2.2", "--tcp-ports 127.0.0.1/$FWD_PORT:5201",
		"--tcp-ns none", "--pid $DIR/pasta.pid $PID"} {
		if !strings.Contains(got, want) {
			t.Errorf("pasta command line %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "--no-map-gw") {
		t.Errorf("pasta must map the gateway to the host's loopback: %s", got)
	}
	if argv2api(slirp4netnsArgs("slirp", req)) != "$DIR/api.sock" {
		t.Errorf("argv2api did not find the API socket")
	}
}

func TestParseAddReply(t *testing.T) {
	tests := []struct {
		reply  string
		id     int
		errSub string
	}{
		{`{"return":{"id":1}}`, 1, ""},
		{`{"return":{"id":7}}` + "\n", 7, ""},
		{`{"error":{"desc":"bad request: add_hostfwd: slirp_add_hostfwd failed"}}`, 0, "slirp_add_hostfwd failed"},
		{`{"return":{}}`, 0, "no return.id"},
		{``, 0, "add_hostfwd reply"},
		{`HTTP/1.1 400 Bad Request`, 0, "add_hostfwd reply"},
	}
	for _, tt := range tests {
		id, err := parseAddReply([]byte(tt.reply))
		switch {
		case tt.errSub == "" && (err != nil || id != tt.id):
			t.Errorf("parseAddReply(%q) = %d, %v; want %d", tt.reply, id, err, tt.id)
		case tt.errSub != "" && (err == nil || !strings.Contains(err.Error(), tt.errSub)):
			t.Errorf("parseAddReply(%q) error %v, want one containing %q", tt.reply, err, tt.errSub)
		}
	}
}

func TestEstimateFitsTenMinutes(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// 4 × 11 s + 5 s + 13 s = 62 s a pass, 6 passes: about 6 minutes.
	if got := estimate(o); got != "6 minutes with these settings" {
		t.Errorf("estimate = %q", got)
	}
}
