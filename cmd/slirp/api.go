package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/slirp-dev/slirp/internal/cli"
	"github.com/slirp-dev/slirp/portfwd"
	"github.com/slirp-dev/slirp/portfwd/api"
)

// apiService is the port-forwarding API of --api-socket: the forwards and
// the server that exposes them on the socket.
type apiService struct {
	forwards *portfwd.Manager
	server   *api.Server
}

// startAPI serves the port-forwarding API on cfg.APISocket: slirp4netns'
// JSON protocol and the HTTP API on one socket (portfwd/api). Forwards
// take the fast path through sockets the namespace helper opens when there
// is one (not in tapfd and bess modes), and the address-preserving path
// through the stack. It runs until ctx ends, then closes every forward and
// removes the socket file.
func (d *daemon) startAPI(ctx context.Context) error {
	log := d.log.With("component", "api")
	mcfg := portfwd.Config{
		Dialer: d.stack,
		Guest:  d.cfg.RecommendedIP(),
		Logger: d.log.With("component", "portfwd"),
	}
	// Only a non-nil helper may go into the interface: a typed nil would
	// look like an opener.
	if d.ns != nil {
		mcfg.Opener = d.ns
	}
	forwards, err := portfwd.New(mcfg)
	if err != nil {
		return fmt.Errorf("start port forwarding: %w", err)
	}
	server, err := api.New(api.Config{
		Manager:    forwards,
		Info:       d.apiInfo,
		StackStats: func() any { return d.stack.Stats() },
		Logger:     log,
	})
	if err != nil {
		forwards.Close()
		return fmt.Errorf("start the API: %w", err)
	}
	ln, err := api.Listen(d.cfg.APISocket)
	if err != nil {
		server.Close()
		forwards.Close()
		return err
	}
	a := &apiService{forwards: forwards, server: server}
	d.wg.Go(func() {
		if err := server.Serve(ln); err != nil {
			log.Error("API socket stopped", "err", err)
		}
	})
	// d.close cancels ctx first on every exit path (signal, exit fd,
	// target gone, failed start) and then waits for d.wg.
	d.wg.Go(func() {
		<-ctx.Done()
		a.close()
	})
	log.Info("API socket listening", "path", d.cfg.APISocket)
	return nil
}

// close stops the API, removes its socket file, and closes every forward
// with its connections.
func (a *apiService) close() {
	a.server.Close()
	a.forwards.Close()
}

// apiInfo is what GET /v1/info tells about this daemon.
func (d *daemon) apiInfo() api.Info {
	version, _, _ := strings.Cut(cli.VersionText(), "\n")
	info := api.Info{
		Version:      strings.TrimPrefix(version, "slirp4netns version "),
		Network:      d.cfg.CIDR.String(),
		Gateway:      d.cfg.Gateway().String(),
		DNS:          d.cfg.DNS().String(),
		GuestIP:      d.cfg.RecommendedIP().String(),
		MTU:          d.cfg.MTU,
		HostLoopback: !d.cfg.DisableHostLoopback,
		FastPath:     d.ns != nil,
		PreservePath: true,
	}
	if d.cfg.EnableIPv6 {
		info.Network6 = d.cfg.IPv6Prefix.String()
		info.Gateway6 = d.cfg.Gateway6().String()
		info.DNS6 = d.cfg.DNS6().String()
		info.GuestIP6 = d.cfg.RecommendedIP6().String()
	}
	return info
}
