package api

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/slirp-dev/slirp/portfwd"
)

func TestParseSlirpRequest(t *testing.T) {
	a := netip.MustParseAddr
	add := func(s portfwd.Spec) slirpRequest {
		s.Mode = portfwd.ModeAuto
		return slirpRequest{execute: executeAdd, add: s}
	}
	tests := []struct {
		name string
		in   string
		want slirpRequest
		desc string
	}{
		{"empty", ``, slirpRequest{}, descCannotParse},
		{"whitespace", " \n", slirpRequest{}, descCannotParse},
		{"badjson", `badjson`, slirpRequest{}, descCannotParse},
		{"truncated", `{"execute":`, slirpRequest{}, descCannotParse},
		{"array", `[1,2]`, slirpRequest{}, descNotObject},
		{"number", `42`, slirpRequest{}, descNotObject},
		{"unexpectedjson", `{"unexpectedjson":42}`, slirpRequest{}, descNoExecute},
		{"execute not a string", `{"execute":42}`, slirpRequest{}, descNoExecute},
		{"bad execute", `{"execute":"bad"}`, slirpRequest{}, descUnknown},
		{"list", `{"execute":"list_hostfwd"}`, slirpRequest{execute: executeList}, ""},
		{"list with trailing newline", "{\"execute\":\"list_hostfwd\"}\n", slirpRequest{execute: executeList}, ""},
		{"list with trailing garbage", `{"execute":"list_hostfwd"}{"execute":"bad"} junk`, slirpRequest{execute: executeList}, ""},
		{"unknown keys ignored", `{"execute":"list_hostfwd","x":[1,{}],"arguments":7}`, slirpRequest{execute: executeList}, ""},
		{"podman", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"","guest_port":80}}` + "\n",
			add(portfwd.Spec{Proto: portfwd.TCP, HostAddr: a("0.0.0.0"), HostPort: 8080, GuestPort: 80}), ""},
		{"rootlesskit", `{"execute":"add_hostfwd","arguments":{"proto":"udp","host_addr":"127.0.0.1","host_port":5353,"guest_addr":"10.0.2.100","guest_port":53}}`,
			add(portfwd.Spec{Proto: portfwd.UDP, HostAddr: a("127.0.0.1"), HostPort: 5353, GuestAddr: a("10.0.2.100"), GuestPort: 53}), ""},
		{"defaults", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080,"guest_port":80}}`,
			add(portfwd.Spec{Proto: portfwd.TCP, HostAddr: a("0.0.0.0"), HostPort: 8080, GuestPort: 80}), ""},
		{"ports truncated", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080.9,"guest_port":80.2}}`,
			add(portfwd.Spec{Proto: portfwd.TCP, HostAddr: a("0.0.0.0"), HostPort: 8080, GuestPort: 80}), ""},
		{"guest outside the subnet", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":1,"guest_addr":"8.8.8.8","guest_port":2}}`,
			add(portfwd.Spec{Proto: portfwd.TCP, HostAddr: a("0.0.0.0"), HostPort: 1, GuestAddr: a("8.8.8.8"), GuestPort: 2}), ""},
		{"missing proto", `{"execute":"add_hostfwd","arguments":{"host_port":8080,"guest_port":80}}`, slirpRequest{}, descBadProto},
		{"no arguments", `{"execute":"add_hostfwd"}`, slirpRequest{}, descBadProto},
		{"proto bad", `{"execute":"add_hostfwd","arguments":{"proto":"bad","host_port":8080,"guest_port":80}}`, slirpRequest{}, descBadProto},
		{"proto sctp", `{"execute":"add_hostfwd","arguments":{"proto":"sctp","host_port":8080,"guest_port":80}}`, slirpRequest{}, descBadProto},
		{"proto TCP", `{"execute":"add_hostfwd","arguments":{"proto":"TCP","host_port":8080,"guest_port":80}}`, slirpRequest{}, descBadProto},
		{"proto number", `{"execute":"add_hostfwd","arguments":{"proto":6,"host_port":8080,"guest_port":80}}`, slirpRequest{}, descBadProto},
		{"host_addr v6", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"::","host_port":8080,"guest_port":80}}`, slirpRequest{}, descBadHostAddr},
		{"host_addr leading zero", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.01","host_port":8080,"guest_port":80}}`, slirpRequest{}, descBadHostAddr},
		{"host_addr name", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"localhost","host_port":8080,"guest_port":80}}`, slirpRequest{}, descBadHostAddr},
		{"bad host_addr before bad port", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"x","guest_addr":"y"}}`, slirpRequest{}, descBadHostAddr},
		{"host_port missing", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","guest_port":80}}`, slirpRequest{}, descBadHostPort},
		{"host_port string", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":"8080","guest_port":80}}`, slirpRequest{}, descBadHostPort},
		{"host_port 0.5", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":0.5,"guest_port":80}}`, slirpRequest{}, descBadHostPort},
		{"host_port negative", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":-5,"guest_port":80}}`, slirpRequest{}, descBadHostPort},
		{"host_port too big", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":70000,"guest_port":80}}`, slirpRequest{}, descBadHostPort},
		{"host_port huge", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":1e400,"guest_port":80}}`, slirpRequest{}, descBadHostPort},
		{"bad port before bad guest_addr", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":0,"guest_addr":"x"}}`, slirpRequest{}, descBadHostPort},
		{"guest_addr bad", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080,"guest_addr":"10.0.2","guest_port":80}}`, slirpRequest{}, descBadGuestAddr},
		{"guest_port missing", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080}}`, slirpRequest{}, descBadGuestPort},
		{"guest_port zero", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080,"guest_port":0}}`, slirpRequest{}, descBadGuestPort},
		{"remove", `{"execute":"remove_hostfwd","arguments":{"id":3}}`, slirpRequest{execute: executeRemove, id: 3}, ""},
		{"remove truncated", `{"execute":"remove_hostfwd","arguments":{"id":6.9}}`, slirpRequest{execute: executeRemove, id: 6}, ""},
		{"remove string id", `{"execute":"remove_hostfwd","arguments":{"id":"3"}}`, slirpRequest{}, descBadID},
		{"remove no id", `{"execute":"remove_hostfwd"}`, slirpRequest{}, descBadID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSlirpRequest([]byte(tt.in))
			if tt.desc != "" {
				if err == nil || err.desc != tt.desc {
					t.Fatalf("parse %q = %+v, %+v; want error %q", tt.in, got, err, tt.desc)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse %q: %+v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("parse %q = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSlirpErrorReply(t *testing.T) {
	if got := string((&slirpError{desc: descCannotParse}).reply()); got != `{"error":{"desc":"bad request: cannot parse JSON"}}` {
		t.Errorf("error reply %s", got)
	}
	if got := string((&slirpError{desc: descAddFailed, detail: "listen: <in use>"}).reply()); got != `{"error":{"desc":"bad request: add_hostfwd: slirp_add_hostfwd failed","detail":"listen: <in use>"}}` {
		t.Errorf("error reply with detail %s", got)
	}
}

func TestClassify(t *testing.T) {
	for _, tt := range []struct {
		in              string
		isHTTP, decided bool
	}{
		{"", false, false},
		{"G", false, false},
		{"GET", false, false},
		{"GET ", true, true},
		{"GET /v1/ports HTTP/1.1", true, true},
		{"DELETE /v1/ports/1", true, true},
		{"DEL", false, false},
		{"DELx", false, true},
		{"GETX", false, true},
		{"{", false, true},
		{" ", false, true},
		{"badjson", false, true},
		{"BADJSON", false, true},
	} {
		h, d := classify([]byte(tt.in))
		if h != tt.isHTTP || d != tt.decided {
			t.Errorf("classify(%q) = %v, %v; want %v, %v", tt.in, h, d, tt.isHTTP, tt.decided)
		}
	}
}

func TestCompleteJSON(t *testing.T) {
	for in, want := range map[string]bool{
		``: false, ` `: false, `{`: false, `{"execute":"li`: false, `{"a":1`: false, `[`: false,
		`{}`: true, `{"a":1}`: true, `x`: true, `{"a":}`: true, `42`: true, `{} trailing`: true,
	} {
		if got := completeJSON([]byte(in)); got != want {
			t.Errorf("completeJSON(%q) = %v, want %v", in, got, want)
		}
	}
}

func FuzzSlirpRequest(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `[]`, `{"execute":"list_hostfwd"}`, `{"execute":"bad"}`, `{"unexpectedjson":42}`,
		`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"","guest_port":80}}`,
		`{"execute":"add_hostfwd","arguments":{"proto":"udp","host_port":1e9,"guest_port":-1}}`,
		`{"execute":"remove_hostfwd","arguments":{"id":1.5}}`, `{"execute":"add_hostfwd","arguments":{"host_port":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, perr := parseSlirpRequest(b)
		if perr != nil {
			if !strings.HasPrefix(perr.desc, "bad request: ") {
				t.Fatalf("error %q", perr.desc)
			}
			var v map[string]map[string]string
			if err := json.Unmarshal(perr.reply(), &v); err != nil || v["error"]["desc"] != perr.desc {
				t.Fatalf("error reply %s does not carry its desc: %v", perr.reply(), err)
			}
			return
		}
		switch req.execute {
		case executeAdd:
			if err := req.add.Validate(); err != nil {
				t.Fatalf("accepted %q as %+v, which does not validate: %v", b, req.add, err)
			}
			if !req.add.HostAddr.Is4() || req.add.GuestAddr.IsValid() && !req.add.GuestAddr.Is4() {
				t.Fatalf("accepted %q with a non-IPv4 address: %+v", b, req.add)
			}
		case executeList:
		case executeRemove:
			if req.id == 0 {
				t.Fatalf("accepted %q with id 0", b)
			}
		default:
			t.Fatalf("accepted %q as %q", b, req.execute)
		}
		if !completeJSON(b) {
			t.Fatalf("parsed %q, which completeJSON calls incomplete", b)
		}
	})
}

func FuzzPortSpec(f *testing.F) {
	for _, s := range []string{
		`{"proto":"tcp","parentPort":8080,"childPort":80}`,
		`{"proto":"udp","parentIP":"127.0.0.1","parentPort":5353,"childIP":"10.0.2.100","childPort":53}`,
		`{"proto":"tcp6","parentPort":8080,"childPort":80,"mode":"preserve"}`,
		`{"proto":"tcp","parentIP":"::1","parentPort":8000,"childPort":8000,"count":11}`,
		`{"proto":"tcp4","parentIP":"::1","parentPort":1,"childPort":1}`, `{}`, `[]`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePortSpec(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		s, err := p.ToSpec()
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("%q converted to an invalid spec %+v: %v", b, s, err)
		}
		again, err := FromSpec(s).ToSpec()
		if err != nil {
			t.Fatalf("%q: FromSpec(%+v) does not convert back: %v", b, s, err)
		}
		if again != s {
			t.Fatalf("%q: round trip %+v then %+v", b, s, again)
		}
	})
}
