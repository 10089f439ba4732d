// Package netstack is the user-mode TCP/IP stack that serves a guest's tap
// device: a gVisor stack (gvisor.dev/gvisor/pkg/tcpip) attached to the tap's
// file descriptor that terminates every TCP connection and UDP flow the guest
// opens and turns it into an ordinary socket of the host (NAT to connect(2)
// and sendto(2)), the way slirp4netns does with libslirp.
//
// The stack owns the addresses of the virtual network: the gateway (N+2,
// which stands for the host's loopback) and the DNS address (N+3, where the
// daemon's DNS forwarder listens through ListenUDP and ListenTCP). Everything
// else the guest sends to is reached on the host network with the same
// address, subject to the policy in policy.go.
//
// All gVisor types stay inside this package: callers see net.Conn,
// net.Listener, net.PacketConn and net/netip values.
//
// Lifecycle: New builds the stack and starts serving the tap; Close stops
// every relay, closes the stack and waits for all goroutines. The tap file
// descriptor stays owned by the caller and must stay open until Close
// returns.
package netstack
