package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"

	"github.com/slirp-dev/slirp/netem"
	"github.com/slirp-dev/slirp/portfwd"
)

// Handler is the HTTP API (see docs/api.md and docs/openapi.yaml):
//
//	GET    /v1/info        the daemon and its network
//	GET    /v1/ports       the forwards
//	POST   /v1/ports       add a forward (a PortSpec); 201 with its PortStatus
//	DELETE /v1/ports/{id}  remove a forward
//	GET    /v1/stats       per-forward and stack counters
//	GET    /v1/conns       the guest's live connections and UDP flows
//	GET    /v1/netem       the test rig's impairments
//	PUT    /v1/netem       replace them (a Netem with the --netem syntax)
//
// Errors reply with a status code and an Error object.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/info", s.getInfo)
	mux.HandleFunc("GET /v1/ports", s.getPorts)
	mux.HandleFunc("POST /v1/ports", s.postPort)
	mux.HandleFunc("DELETE /v1/ports/{id}", s.deletePort)
	mux.HandleFunc("GET /v1/stats", s.getStats)
	mux.HandleFunc("GET /v1/conns", s.getConns)
	mux.HandleFunc("GET /v1/netem", s.getNetem)
	mux.HandleFunc("PUT /v1/netem", s.putNetem)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API endpoint "+r.Method+" "+r.URL.Path+"; see GET /v1/info, /v1/ports, /v1/stats, /v1/conns, /v1/netem")
	})
	return s.logRequests(mux)
}

func (s *Server) logRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Debug("API request", "protocol", "http", "method", r.Method, "path", r.URL.Path)
		h.ServeHTTP(w, r)
	})
}

func (s *Server) getInfo(w http.ResponseWriter, _ *http.Request) {
	var info Info
	if s.cfg.Info != nil {
		info = s.cfg.Info()
	}
	info.APIVersion = Version
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) getPorts(w http.ResponseWriter, _ *http.Request) {
	ports := []PortStatus{}
	for _, fw := range s.cfg.Manager.List() {
		ports = append(ports, PortStatus{ID: fw.ID, Spec: FromSpec(fw.Spec)})
	}
	writeJSON(w, http.StatusOK, ports)
}

func (s *Server) postPort(w http.ResponseWriter, r *http.Request) {
	p, err := DecodePortSpec(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	spec, err := p.ToSpec()
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	fw, err := s.cfg.Manager.Add(spec)
	switch {
	case errors.Is(err, portfwd.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, PortStatus{ID: fw.ID, Spec: FromSpec(fw.Spec)})
}

func (s *Server) deletePort(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id < 1 {
		writeError(w, http.StatusBadRequest, "bad id "+strconv.Quote(r.PathValue("id"))+": ids are positive integers, as GET /v1/ports lists them")
		return
	}
	if err := s.cfg.Manager.Remove(id); err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, portfwd.ErrNotFound) {
			status = http.StatusNotFound
		}
		writeError(w, status, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) getStats(w http.ResponseWriter, _ *http.Request) {
	st := Stats{Ports: []PortStats{}}
	for _, fs := range s.cfg.Manager.Stats() {
		st.Ports = append(st.Ports, PortStats{ID: fs.ID, Spec: FromSpec(fs.Spec), Counters: fs.Counters})
	}
	if s.cfg.StackStats != nil {
		st.Stack = s.cfg.StackStats()
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) getConns(w http.ResponseWriter, _ *http.Request) {
	conns := []Conn{}
	if s.cfg.Flows != nil {
		conns = append(conns, s.cfg.Flows()...)
	}
	for _, c := range s.cfg.Manager.Conns() {
		conns = append(conns, FromConn(c))
	}
	slices.SortStableFunc(conns, func(a, b Conn) int { return a.Started.Compare(b.Started) })
	writeJSON(w, http.StatusOK, conns)
}

func (s *Server) getNetem(w http.ResponseWriter, _ *http.Request) {
	if s.cfg.Netem == nil {
		writeError(w, http.StatusNotImplemented, "this daemon has no impairments")
		return
	}
	spec := s.cfg.Netem()
	writeJSON(w, http.StatusOK, Netem{Spec: spec.String(), Details: &spec})
}

func (s *Server) putNetem(w http.ResponseWriter, r *http.Request) {
	if s.cfg.SetNetem == nil {
		writeError(w, http.StatusNotImplemented, "this daemon has no impairments")
		return
	}
	var req Netem
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad request: want {\"spec\": \"delay=50ms loss=1%...\"}: "+err.Error())
		return
	}
	spec, err := netem.Parse(req.Spec)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.cfg.SetNetem(spec)
	s.log.Info("impairments set", "netem", spec.String())
	writeJSON(w, http.StatusOK, Netem{Spec: spec.String(), Details: &spec})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(marshal(v), '\n'))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, Error{Message: msg})
}
