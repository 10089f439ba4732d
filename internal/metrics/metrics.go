// Package metrics serves the daemon's counters in the Prometheus text
// exposition format (version 0.0.4), on a TCP address or a unix socket.
//
// Counters come from Sources: a Source returns a struct whose numeric fields
// carry json tags (netstack.Stats, dns.Stats...); every such field becomes
// one metric named slirp_<source>_<tag>. Fields whose tag ends in "_active"
// are gauges, the rest counters. No client library is needed for this
// little, and the daemon stays free of one.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"
)

// Source is one group of metrics.
type Source struct {
	// Name prefixes its metrics: slirp_<Name>_<field>.
	Name string
	// Help describes the group in the HELP lines.
	Help string
	// Get returns a struct (or pointer to one) of numeric fields.
	Get func() any
}

// Write writes the current values of sources in the text format.
func Write(w io.Writer, sources []Source) error {
	var b strings.Builder
	for _, src := range sources {
		v := reflect.Indirect(reflect.ValueOf(src.Get()))
		if v.Kind() != reflect.Struct {
			return fmt.Errorf("metrics source %s: %s is not a struct", src.Name, v.Kind())
		}
		type field struct {
			name string
			val  float64
		}
		var fields []field
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			if tag == "" || tag == "-" || !t.Field(i).IsExported() {
				tag = toSnake(t.Field(i).Name)
			}
			f := v.Field(i)
			var x float64
			switch f.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				x = float64(f.Int())
			case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
				x = float64(f.Uint())
			case reflect.Float32, reflect.Float64:
				x = f.Float()
			default:
				continue
			}
			fields = append(fields, field{tag, x})
		}
		sort.Slice(fields, func(i, j int) bool { return fields[i].name < fields[j].name })
		for _, f := range fields {
			name := "slirp_" + src.Name + "_" + f.name
			typ := "counter"
			if strings.HasSuffix(f.name, "_active") {
				typ = "gauge"
			} else {
				name += "_total"
			}
			fmt.Fprintf(&b, "# HELP %s %s: %s\n# TYPE %s %s\n%s %v\n", name, src.Help, strings.ReplaceAll(f.name, "_", " "), name, typ, name, f.val)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func toSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Server serves /metrics until Close.
type Server struct {
	srv  *http.Server
	l    net.Listener
	path string // unix socket file to remove, if any
	wg   sync.WaitGroup
}

// Listen opens addr: a unix socket when it starts with "/" or "./" (mode
// 0600, removed by Close), else a TCP HOST:PORT.
func Listen(addr string, sources []Source, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var l net.Listener
	var err error
	s := &Server{}
	if strings.HasPrefix(addr, "/") || strings.HasPrefix(addr, "./") {
		_ = os.Remove(addr)
		l, err = net.Listen("unix", addr)
		if err == nil {
			s.path = addr
			err = os.Chmod(addr, 0o600)
		}
	} else {
		l, err = net.Listen("tcp", addr)
	}
	if err != nil {
		if l != nil {
			l.Close()
		}
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if err := Write(w, sources); err != nil {
			log.Warn("metrics", "err", err)
		}
	})
	s.l = l
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics server stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.l.Addr() }

// Close stops the server, waits for it and removes its socket file.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	s.wg.Wait()
	if s.path != "" {
		_ = os.Remove(s.path)
	}
	return err
}
