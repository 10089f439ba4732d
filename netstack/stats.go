package netstack

import "sync/atomic"

// Stats are the stack's counters since New. Field names are stable: the
// daemon serves them on its API (/v1/stats).
type Stats struct {
	// TCP connections from the guest.
	TCPActive    int64  `json:"tcp_active"`   // relays running now
	TCPOpened    uint64 `json:"tcp_opened"`   // host connects that succeeded
	TCPFailed    uint64 `json:"tcp_failed"`   // host connects that failed
	TCPRefused   uint64 `json:"tcp_refused"`  // refused by policy (ICMP sent)
	TCPDropped   uint64 `json:"tcp_dropped"`  // SYNs dropped: too many pending
	TCPToHost    uint64 `json:"tcp_to_host"`  // bytes guest → host
	TCPToGuest   uint64 `json:"tcp_to_guest"` // bytes host → guest
	UDPActive    int64  `json:"udp_active"`   // tracked flows now
	UDPOpened    uint64 `json:"udp_opened"`
	UDPRefused   uint64 `json:"udp_refused"`
	UDPDropped   uint64 `json:"udp_dropped"` // new flows dropped: table full
	UDPToHost    uint64 `json:"udp_to_host"`
	UDPToGuest   uint64 `json:"udp_to_guest"`
	LinkRxFrames uint64 `json:"link_rx_frames"` // frames read from the tap
	LinkTxFrames uint64 `json:"link_tx_frames"` // frames written to the tap
	LinkRxBytes  uint64 `json:"link_rx_bytes"`
	LinkTxBytes  uint64 `json:"link_tx_bytes"`
	// Malformed counts packets the stack dropped as malformed or invalid.
	Malformed uint64 `json:"malformed"`
}

// counters are the Stats the forwarders count themselves.
type counters struct {
	tcpOpened, tcpFailed, tcpRefused, tcpDropped, tcpToHost, tcpToGuest atomic.Uint64
	udpOpened, udpRefused, udpDropped, udpToHost, udpToGuest            atomic.Uint64
}

// Stats returns the counters now.
func (s *Stack) Stats() Stats {
	c := &s.counters
	st := s.stack.Stats()
	s.tcp.mu.Lock()
	tcpActive := int64(len(s.tcp.conns))
	s.tcp.mu.Unlock()
	return Stats{
		TCPActive:    tcpActive,
		TCPOpened:    c.tcpOpened.Load(),
		TCPFailed:    c.tcpFailed.Load(),
		TCPRefused:   c.tcpRefused.Load(),
		TCPDropped:   c.tcpDropped.Load(),
		TCPToHost:    c.tcpToHost.Load(),
		TCPToGuest:   c.tcpToGuest.Load(),
		UDPActive:    int64(s.udp.count()),
		UDPOpened:    c.udpOpened.Load(),
		UDPRefused:   c.udpRefused.Load(),
		UDPDropped:   c.udpDropped.Load(),
		UDPToHost:    c.udpToHost.Load(),
		UDPToGuest:   c.udpToGuest.Load(),
		LinkRxFrames: st.NICs.Rx.Packets.Value(),
		LinkTxFrames: st.NICs.Tx.Packets.Value(),
		LinkRxBytes:  st.NICs.Rx.Bytes.Value(),
		LinkTxBytes:  st.NICs.Tx.Bytes.Value(),
		Malformed:    st.NICs.MalformedL4RcvdPackets.Value() + st.IP.MalformedPacketsReceived.Value() + st.TCP.InvalidSegmentsReceived.Value() + st.UDP.MalformedPacketsReceived.Value(),
	}
}
