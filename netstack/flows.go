package netstack

import (
	"sort"
	"time"
)

// Flow describes one live connection or UDP flow the stack relays, for
// people looking at what the guest is doing (slirpctl conns).
type Flow struct {
	Proto   string    `json:"proto"`   // "tcp" or "udp"
	Guest   string    `json:"guest"`   // the guest's address and port
	Dest    string    `json:"dest"`    // where the guest sent it
	Host    string    `json:"host"`    // the host address it was connected to
	Started time.Time `json:"started"` // when the flow opened
	ToHost  uint64    `json:"to_host"` // bytes guest → host
	ToGuest uint64    `json:"to_guest"`
}

// Flows lists the live flows, oldest first.
func (s *Stack) Flows() []Flow {
	var out []Flow
	s.tcp.mu.Lock()
	for rl := range s.tcp.conns {
		out = append(out, Flow{
			Proto: "tcp", Guest: rl.guestAddr.String(), Dest: rl.dest.String(), Host: rl.target.String(),
			Started: rl.started, ToHost: rl.sentToHost.Load(), ToGuest: rl.sentToGuest.Load(),
		})
	}
	s.tcp.mu.Unlock()
	s.udp.mu.Lock()
	for _, fl := range s.udp.flows {
		out = append(out, Flow{
			Proto: "udp", Guest: addrPort(fl.id.RemoteAddress, fl.id.RemotePort).String(),
			Dest: addrPort(fl.id.LocalAddress, fl.id.LocalPort).String(), Host: fl.target.String(),
			Started: fl.started, ToHost: fl.sentToHost.Load(), ToGuest: fl.sentToGuest.Load(),
		})
	}
	s.udp.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}
