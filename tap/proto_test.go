package tap

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func sampleRequests() []request {
	return []request{
		{kind: kindOpenTap, id: 1, tap: TapConfig{Name: "tap0"}},
		{kind: kindOpenTap, id: 2, tap: TapConfig{Name: "", VnetHdr: true}},
		{kind: kindOpenTap, id: 3, tap: TapConfig{Name: "tap0", Configure: &Addressing{}}},
		{kind: kindOpenTap, id: 0xfffffffe, tap: TapConfig{Name: "tap15chars_long", VnetHdr: true, Configure: &Addressing{
			MTU:      65520,
			MAC:      net.HardwareAddr{0x0e, 0xd4, 0x18, 0xd9, 0x38, 0xfb},
			Address:  netip.MustParsePrefix("10.0.2.100/24"),
			Gateway:  netip.MustParseAddr("10.0.2.2"),
			Address6: netip.MustParsePrefix("fd00::100/64"),
			Gateway6: netip.MustParseAddr("fe80::2"),
		}}},
		{kind: kindSocket, id: 7, sock: socketArgs{domain: 2, typ: 1, proto: 0}},
		{kind: kindSocket, id: 8, sock: socketArgs{domain: -1, typ: -2, proto: 1 << 30}},
		{kind: kindKeepAcrossExec, id: 9},
	}
}

func TestRequestRoundTrip(t *testing.T) {
	for _, r := range sampleRequests() {
		b, err := r.encode()
		if err != nil {
			t.Fatalf("encode %+v: %v", r, err)
		}
		got, err := decodeRequest(b)
		if err != nil {
			t.Fatalf("decode %x: %v", b, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip of %+v gave %+v", r, got)
		}
	}
}

func TestRequestValidation(t *testing.T) {
	for _, tc := range []struct {
		cfg  TapConfig
		want string
	}{
		{TapConfig{Name: "sixteen_chars_xx"}, "at most 15"},
		{TapConfig{Name: "ta\x00p"}, "NUL"},
		{TapConfig{Name: "tap0", Configure: &Addressing{MTU: -1}}, "MTU -1 is out of range"},
		{TapConfig{Name: "tap0", Configure: &Addressing{MTU: 70000}}, "MTU 70000 is out of range"},
		{TapConfig{Name: "tap0", Configure: &Addressing{MAC: net.HardwareAddr{1, 2, 3}}}, "6"},
		{TapConfig{Name: "tap0", Configure: &Addressing{Address: netip.MustParsePrefix("fd00::1/64")}}, "IPv4 address"},
		{TapConfig{Name: "tap0", Configure: &Addressing{Gateway: netip.MustParseAddr("::ffff:10.0.2.2")}}, "IPv4 gateway"},
		{TapConfig{Name: "tap0", Configure: &Addressing{Address6: netip.MustParsePrefix("10.0.2.1/24")}}, "IPv6 address"},
		{TapConfig{Name: "tap0", Configure: &Addressing{Gateway6: netip.MustParseAddr("fe80::2%eth0")}}, "IPv6 gateway"},
	} {
		_, err := request{kind: kindOpenTap, tap: tc.cfg}.encode()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("encode %+v: err = %v, want one mentioning %q", tc.cfg, err, tc.want)
		}
	}
}

func TestDecodeRequestRejects(t *testing.T) {
	good, err := sampleRequests()[3].encode()
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"empty":          {},
		"unknown kind":   {9, 0, 0, 0, 1},
		"truncated":      good[:len(good)-1],
		"trailing":       append(append([]byte{}, good...), 0),
		"unknown flags":  {kindOpenTap, 0, 0, 0, 1, 0x80, 0},
		"name too long":  append([]byte{kindOpenTap, 0, 0, 0, 1, 0, 16}, bytes.Repeat([]byte("a"), 16)...),
		"bad addr len":   {kindOpenTap, 0, 0, 0, 1, flagConfigure, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 0, 0},
		"bits no addr":   {kindOpenTap, 0, 0, 0, 1, flagConfigure, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0},
		"bits too big":   {kindOpenTap, 0, 0, 0, 1, flagConfigure, 0, 0, 0, 0, 0, 0, 4, 10, 0, 2, 100, 33, 0, 0, 0, 0},
		"socket short":   {kindSocket, 0, 0, 0, 1, 0, 0, 0, 2},
		"keep with body": {kindKeepAcrossExec, 0, 0, 0, 1, 0},
	} {
		if _, err := decodeRequest(b); !errors.Is(err, errMalformed) {
			t.Errorf("%s: decodeRequest(%x) err = %v, want errMalformed", name, b, err)
		}
	}
}

func TestReplyRoundTrip(t *testing.T) {
	for _, r := range []reply{
		{id: 0, status: statusOK},
		{id: 5, status: statusOK, text: "tap0"},
		{id: 6, status: statusFailed, errno: 16, text: "ioctl(TUNSETIFF) for tap0: Device or resource busy"},
		{id: 7, status: statusFailed, text: "no errno"},
	} {
		got, err := decodeReply(r.encode())
		if err != nil || got != r {
			t.Fatalf("round trip of %+v gave %+v, %v", r, got, err)
		}
	}
	long := reply{id: 1, status: statusFailed, text: strings.Repeat("x", 2*maxPacket)}
	if b := long.encode(); len(b) != maxPacket {
		t.Fatalf("encoding an oversized reply gave %d bytes, want it cut to %d", len(b), maxPacket)
	}
	for name, b := range map[string][]byte{
		"short":         {0, 0, 0},
		"bad status":    {0, 0, 0, 1, 2, 0, 0, 0, 0},
		"ok with errno": {0, 0, 0, 1, statusOK, 0, 0, 0, 1},
	} {
		if _, err := decodeReply(b); !errors.Is(err, errMalformed) {
			t.Errorf("%s: decodeReply(%x) err = %v, want errMalformed", name, b, err)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, r := range sampleRequests() {
		b, err := r.encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{kindOpenTap, 0, 0, 0, 1, flagConfigure, 0, 0, 0, 0, 0, 0, 16})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRequest(b)
		if err != nil {
			return
		}
		// The decoder accepts only canonical messages: encoding what it
		// returned must give the same bytes back.
		again, err := r.encode()
		if err != nil {
			t.Fatalf("decoded %x to %+v, which does not encode: %v", b, r, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("decoded %x to %+v, which encodes to %x", b, r, again)
		}
	})
}

func FuzzDecodeReply(f *testing.F) {
	f.Add(reply{id: 0, status: statusOK}.encode())
	f.Add(reply{id: 9, status: statusOK, text: "tap0"}.encode())
	f.Add(reply{id: 3, status: statusFailed, errno: 1, text: "setns: Operation not permitted"}.encode())
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeReply(b)
		if err != nil {
			return
		}
		if again := r.encode(); !bytes.Equal(again, b) {
			t.Fatalf("decoded %x to %+v, which encodes to %x", b, r, again)
		}
	})
}
