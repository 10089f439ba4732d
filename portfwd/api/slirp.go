package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/netip"
	"strconv"

	"github.com/slirp-dev/slirp/portfwd"
)

// This file is slirp4netns' API protocol (api.c), byte for byte: one JSON
// request per connection, a compact JSON reply without a trailing newline,
// and the same error descriptions, checked in the same order.

// maxSlirpRequest is slirp4netns' read buffer: a request that fills it is
// "too large", whatever it holds.
const maxSlirpRequest = 4096

// The error descriptions of slirp4netns; clients and tests match them.
const (
	descCannotParse   = "bad request: cannot parse JSON"
	descNotObject     = "bad request: json_object() failed"
	descNoExecute     = "bad request: no execute found"
	descUnknown       = "bad request: unknown execute"
	descTooLarge      = "bad request: too large message"
	descBadProto      = "bad request: add_hostfwd: bad arguments.proto"
	descBadHostAddr   = "bad request: add_hostfwd: bad arguments.host_addr"
	descBadHostPort   = "bad request: add_hostfwd: bad arguments.host_port"
	descBadGuestAddr  = "bad request: add_hostfwd: bad arguments.guest_addr"
	descBadGuestPort  = "bad request: add_hostfwd: bad arguments.guest_port"
	descAddFailed     = "bad request: add_hostfwd: slirp_add_hostfwd failed"
	descBadID         = "bad request: remove_hostfwd: bad arguments.id"
	descRemoveFailed  = "bad request: remove_hostfwd: slirp_remove_hostfwd failed"
	descTimeout       = "bad request: no complete request within the time limit; send one JSON object, e.g. {\"execute\":\"list_hostfwd\"}"
	descBusy          = "busy: too many API connections at once; retry"
	descNotPermitted  = "permission denied: this API socket serves only its owner and root"
	descShuttingDown  = "unavailable: the daemon is shutting down"
	executeAdd        = "add_hostfwd"
	executeList       = "list_hostfwd"
	executeRemove     = "remove_hostfwd"
	slirpDefaultHost  = "0.0.0.0"
	maxSlirpPortValue = 65535
)

// slirpRequest is a parsed request of the slirp4netns protocol.
type slirpRequest struct {
	execute string
	// add is the forward of add_hostfwd (GuestAddr zero: the default).
	add portfwd.Spec
	// id is the forward of remove_hostfwd.
	id int
}

// slirpError is an error reply. detail, when set, is our addition to the
// error object: the reason behind a generic description.
type slirpError struct {
	desc   string
	detail string
}

func (e *slirpError) reply() []byte {
	type errObj struct {
		Desc   string `json:"desc"`
		Detail string `json:"detail,omitempty"`
	}
	return marshal(struct {
		Error errObj `json:"error"`
	}{errObj{e.desc, e.detail}})
}

// parseSlirpRequest parses a request the way slirp4netns' parson-based
// api.c does: the first JSON value counts and anything after it is
// ignored, unknown keys are ignored, numbers are doubles truncated to int,
// and non-string strings or non-number numbers read as absent.
func parseSlirpRequest(b []byte) (slirpRequest, *slirpError) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return slirpRequest{}, &slirpError{desc: descCannotParse}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return slirpRequest{}, &slirpError{desc: descNotObject}
	}
	execute, ok := obj["execute"].(string)
	if !ok {
		return slirpRequest{}, &slirpError{desc: descNoExecute}
	}
	args, _ := obj["arguments"].(map[string]any)
	switch execute {
	case executeAdd:
		return parseAddHostfwd(args)
	case executeList:
		return slirpRequest{execute: executeList}, nil
	case executeRemove:
		id, ok := intArg(args, "id")
		if !ok {
			return slirpRequest{}, &slirpError{desc: descBadID}
		}
		return slirpRequest{execute: executeRemove, id: id}, nil
	}
	return slirpRequest{}, &slirpError{desc: descUnknown}
}

// parseAddHostfwd checks the arguments in slirp4netns' order: proto,
// host_addr, host_port, guest_addr, guest_port.
func parseAddHostfwd(args map[string]any) (slirpRequest, *slirpError) {
	spec := portfwd.Spec{Mode: portfwd.ModeAuto}
	// A missing proto crashes slirp4netns (it strcmp()s a NULL); it is a
	// bad proto here.
	switch proto, _ := args["proto"].(string); proto {
	case "tcp":
		spec.Proto = portfwd.TCP
	case "udp":
		spec.Proto = portfwd.UDP
	default:
		return slirpRequest{}, &slirpError{desc: descBadProto}
	}
	hostAddr, _ := args["host_addr"].(string)
	if hostAddr == "" {
		hostAddr = slirpDefaultHost
	}
	a, ok := parseInetPton4(hostAddr)
	if !ok {
		return slirpRequest{}, &slirpError{desc: descBadHostAddr}
	}
	spec.HostAddr = a
	hp, ok := portArg(args, "host_port")
	if !ok {
		return slirpRequest{}, &slirpError{desc: descBadHostPort}
	}
	spec.HostPort = hp
	if guestAddr, _ := args["guest_addr"].(string); guestAddr != "" {
		a, ok := parseInetPton4(guestAddr)
		if !ok {
			return slirpRequest{}, &slirpError{desc: descBadGuestAddr}
		}
		spec.GuestAddr = a
	}
	gp, ok := portArg(args, "guest_port")
	if !ok {
		return slirpRequest{}, &slirpError{desc: descBadGuestPort}
	}
	spec.GuestPort = gp
	return slirpRequest{execute: executeAdd, add: spec}, nil
}

// parseInetPton4 accepts what inet_pton(AF_INET) accepts: four decimal
// parts without leading zeros.
func parseInetPton4(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, false
	}
	return a, true
}

// numberArg reads a JSON number as parson's json_object_dotget_number
// does: anything else is 0. The value is truncated toward zero, as the C
// (int) cast does; values no int holds read as 0.
func numberArg(args map[string]any, key string) int {
	n, ok := args[key].(json.Number)
	if !ok {
		return 0
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsNaN(f) || f >= math.MaxInt32+1 || f <= math.MinInt32-1 {
		return 0
	}
	return int(f)
}

// portArg is a port argument: 1..65535 after truncation. slirp4netns
// does not check the range (70000 wraps to 4464); a port is refused here.
func portArg(args map[string]any, key string) (uint16, bool) {
	n := numberArg(args, key)
	if n < 1 || n > maxSlirpPortValue {
		return 0, false
	}
	return uint16(n), true
}

func intArg(args map[string]any, key string) (int, bool) {
	n := numberArg(args, key)
	return n, n != 0
}

// slirpEntry is a forward in list_hostfwd's reply, fields in
// slirp4netns' order.
type slirpEntry struct {
	ID        int    `json:"id"`
	Proto     string `json:"proto"`
	HostAddr  string `json:"host_addr"`
	HostPort  int    `json:"host_port"`
	GuestAddr string `json:"guest_addr"`
	GuestPort int    `json:"guest_port"`
}

// executeSlirp runs a request on m and returns the reply.
func executeSlirp(m *portfwd.Manager, req slirpRequest) []byte {
	switch req.execute {
	case executeAdd:
		fw, err := m.Add(req.add)
		if err != nil {
			e := &slirpError{desc: descAddFailed, detail: err.Error()}
			if errors.Is(err, portfwd.ErrClosed) {
				e = &slirpError{desc: descShuttingDown}
			}
			return e.reply()
		}
		return marshal(map[string]any{"return": map[string]int{"id": fw.ID}})
	case executeList:
		// slirp4netns replies {"entries":[...]} although its manual says
		// {"return":{"entries":[...]}}; both are given, the real shape
		// first. A port range lists one entry per port, all with the
		// forward's id.
		entries := []slirpEntry{}
		for _, fw := range m.List() {
			s := fw.Spec
			for i := range s.Count {
				entries = append(entries, slirpEntry{
					ID:        fw.ID,
					Proto:     string(s.Proto),
					HostAddr:  s.HostAddr.String(),
					HostPort:  int(s.HostPort) + i,
					GuestAddr: s.GuestAddr.String(),
					GuestPort: int(s.GuestPort) + i,
				})
			}
		}
		return marshal(struct {
			Entries []slirpEntry `json:"entries"`
			Return  struct {
				Entries []slirpEntry `json:"entries"`
			} `json:"return"`
		}{Entries: entries, Return: struct {
			Entries []slirpEntry `json:"entries"`
		}{entries}})
	case executeRemove:
		if err := m.Remove(req.id); err != nil {
			if errors.Is(err, portfwd.ErrNotFound) {
				return (&slirpError{desc: descBadID}).reply()
			}
			return (&slirpError{desc: descRemoveFailed, detail: err.Error()}).reply()
		}
		return []byte(`{"return":{}}`)
	}
	return (&slirpError{desc: descUnknown}).reply()
}

// marshal is compact JSON without the trailing newline or HTML escaping.
func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only our own fixed types reach here.
		panic(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// completeJSON reports whether b holds a whole first JSON value, or
// something that can never become one: in both cases no more input is
// needed to answer.
func completeJSON(b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return err == nil || !(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF))
}
