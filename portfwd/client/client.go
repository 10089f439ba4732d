// Package client talks to the HTTP API of a slirp daemon's API socket
// (portfwd/api): list, add and remove port forwards, read info and
// counters. slirpctl is built on it.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"

	"github.com/slirp-dev/slirp/portfwd/api"
)

// Client is a connection-less handle on one API socket; each call opens a
// connection (kept alive for the next call).
type Client struct {
	path string
	http *http.Client
}

// New returns a client for the API socket at path.
func New(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns: 1,
	}
	return &Client{path: path, http: &http.Client{Transport: tr}}
}

// Close drops the idle connection.
func (c *Client) Close() {
	c.http.CloseIdleConnections()
}

// Info returns GET /v1/info.
func (c *Client) Info(ctx context.Context) (api.Info, error) {
	var info api.Info
	err := c.do(ctx, http.MethodGet, "/v1/info", nil, http.StatusOK, &info)
	return info, err
}

// Ports returns GET /v1/ports.
func (c *Client) Ports(ctx context.Context) ([]api.PortStatus, error) {
	var ports []api.PortStatus
	err := c.do(ctx, http.MethodGet, "/v1/ports", nil, http.StatusOK, &ports)
	return ports, err
}

// AddPort adds a forward (POST /v1/ports) and returns it as added.
func (c *Client) AddPort(ctx context.Context, p api.PortSpec) (api.PortStatus, error) {
	var st api.PortStatus
	err := c.do(ctx, http.MethodPost, "/v1/ports", p, http.StatusCreated, &st)
	return st, err
}

// RemovePort removes a forward (DELETE /v1/ports/{id}).
func (c *Client) RemovePort(ctx context.Context, id int) error {
	return c.do(ctx, http.MethodDelete, "/v1/ports/"+strconv.Itoa(id), nil, http.StatusOK, nil)
}

// Stats returns GET /v1/stats; Stack is decoded as a JSON object
// (map[string]any).
func (c *Client) Stats(ctx context.Context) (api.Stats, error) {
	var st api.Stats
	err := c.do(ctx, http.MethodGet, "/v1/stats", nil, http.StatusOK, &st)
	return st, err
}

// Conns returns GET /v1/conns: the guest's live flows, as JSON objects.
func (c *Client) Conns(ctx context.Context) ([]api.Conn, error) {
	var conns []api.Conn
	err := c.do(ctx, http.MethodGet, "/v1/conns", nil, http.StatusOK, &conns)
	return conns, err
}

// Netem returns GET /v1/netem: the impairments in force.
func (c *Client) Netem(ctx context.Context) (api.Netem, error) {
	var n api.Netem
	err := c.do(ctx, http.MethodGet, "/v1/netem", nil, http.StatusOK, &n)
	return n, err
}

// SetNetem replaces the impairments (PUT /v1/netem) with spec, in the
// --netem syntax; "" or "none" clears them.
func (c *Client) SetNetem(ctx context.Context, spec string) (api.Netem, error) {
	var n api.Netem
	err := c.do(ctx, http.MethodPut, "/v1/netem", api.Netem{Spec: spec}, http.StatusOK, &n)
	return n, err
}

// APIError is an error reply of the daemon.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return e.Message }

func (c *Client) do(ctx context.Context, method, path string, in any, want int, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	// The host part is ignored: the transport always dials the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://slirp"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http.Do(req)
	if err != nil {
		return c.explain(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read the reply from %s: %w", c.path, err)
	}
	if res.StatusCode != want {
		var e api.Error
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			return &APIError{Status: res.StatusCode, Message: e.Message}
		}
		return &APIError{Status: res.StatusCode, Message: fmt.Sprintf("%s %s: %s: %s", method, path, res.Status, bytes.TrimSpace(b))}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: the reply is not what this client understands (is %s a slirp API socket?): %w", method, path, c.path, err)
	}
	return nil
}

// explain turns a failure to reach the socket into what to do about it.
func (c *Client) explain(err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("API socket %s does not exist: is the daemon running with --api-socket %s?", c.path, c.path)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("nothing listens on API socket %s: the daemon has exited or the file is stale", c.path)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("API socket %s: permission denied; the socket serves only the user running the daemon (and root)", c.path)
	}
	return fmt.Errorf("API socket %s: %w", c.path, err)
}
