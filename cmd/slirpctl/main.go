// Command slirpctl manages the port forwards of a running slirp daemon
// through its API socket (slirp --api-socket PATH):
//
//	slirpctl [--api-socket PATH] [--json] add [--mode=auto|fast|preserve] SPEC...
//	slirpctl [--api-socket PATH] [--json] ls
//	slirpctl [--api-socket PATH] [--json] rm ID...
//	slirpctl [--api-socket PATH] [--json] stats
//	slirpctl [--api-socket PATH] [--json] info
//
// SPEC is [HOSTADDR:]HOSTPORT:[GUESTADDR:]GUESTPORT[/tcp|/udp], e.g. 8080:80,
// 127.0.0.1:5353:53/udp, [::1]:8080:80 or 8000-8010:8000-8010. The socket
// defaults to $SLIRP_API_SOCKET.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
