// Package dns is the DNS forwarder the guest reaches at N+3:53 (10.0.2.3 by
// default), over UDP and TCP.
//
// It forwards each query as received, with only its ID rewritten, to the
// nameservers listed in the host's resolv.conf (or to fixed upstreams), and
// passes the answer back unchanged: TTLs, every record type, the EDNS0 OPT
// record and DNSSEC bits survive. Upstream sockets are opened by the host
// process in the host network namespace, so loopback resolvers such as
// systemd-resolved's 127.0.0.53 work, as they do with slirp4netns.
//
// On top of plain forwarding the server
//   - follows resolv.conf, re-reading it when it changes (checked at most
//     once a second, like libslirp);
//   - fails over across all nameservers in order within one time budget and
//     answers SERVFAIL when none answered, so the guest never hangs;
//   - retries a truncated UDP answer over TCP and hands the client the full
//     answer when it fits the client's UDP size, or a truncated one that
//     makes the client retry over TCP;
//   - caches positive and negative answers within their TTLs;
//   - answers a few static names (host.containers.internal and friends)
//     itself.
//
// The package knows nothing about gVisor: the caller hands ServePacket a
// net.PacketConn and ServeStream a net.Listener, which in the daemon live on
// the guest-facing stack. Every goroutine the Server starts is owned by one of
// the Serve calls and stopped by its context or by Close, which waits for
// them.
package dns
