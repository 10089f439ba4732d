// Package state keeps what slirprun knows about its containers on disk, so
// that other slirprun invocations (ps, logs, stop, rm, port) can find them.
//
// Each container has a directory <root>/containers/<id> holding state.json,
// a lock file that the supervising slirprun process holds exclusively while
// the container runs (so "running" never depends on a pid that may have been
// reused), the network daemon's API socket and, for detached containers,
// the log.
package state

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/runtime/spec"
)

// EnvDir overrides the default state root.
const EnvDir = "SLIRPRUN_STATE"

// DefaultRoot is $SLIRPRUN_STATE, else $XDG_RUNTIME_DIR/slirprun, else
// /tmp/slirprun-<uid> (XDG_RUNTIME_DIR is often unset under su and sudo).
func DefaultRoot() string {
	if d := os.Getenv(EnvDir); d != "" {
		return d
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "slirprun")
	}
	return filepath.Join(os.TempDir(), "slirprun-"+strconv.Itoa(os.Getuid()))
}

// Port is a published port and the daemon's id for it.
type Port struct {
	spec.Publish
	ID int `json:"id"`
}

// Record is the content of state.json.
type Record struct {
	ID       string    `json:"id"`
	Name     string    `json:"name,omitempty"`
	Pod      string    `json:"pod,omitempty"`
	Command  []string  `json:"command"`
	Image    string    `json:"image,omitempty"`
	Created  time.Time `json:"created"`
	Detached bool      `json:"detached,omitempty"`
	// AutoRemove (--rm) removes a detached container's state at exit.
	AutoRemove bool `json:"auto_remove,omitempty"`
	// Pid is the host pid of the container's init (its PID 1).
	Pid int `json:"pid,omitempty"`
	// Supervisor is the host pid of the slirprun process running it.
	Supervisor int `json:"supervisor,omitempty"`
	// APISocket is the network daemon's API socket, when networked.
	APISocket string `json:"api_socket,omitempty"`
	Ports     []Port `json:"ports,omitempty"`
	// Exited and ExitCode are set when the container has ended.
	Exited   bool      `json:"exited,omitempty"`
	ExitCode int       `json:"exit_code,omitempty"`
	Finished time.Time `json:"finished,omitzero"`
}

// Store is a state root.
type Store struct{ Root string }

func (s Store) dir() string { return filepath.Join(s.Root, "containers") }

// Dir is the state directory of container id.
func (s Store) Dir(id string) string { return filepath.Join(s.dir(), id) }

// NewID returns a random 12-hex-digit container id.
func NewID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// ValidName reports whether name may be used as a container or pod name.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("name %q: use letters, digits, '_', '.' and '-' (at most 63, starting with a letter or digit)", name)
	}
	return nil
}

// Container is an open, locked container state directory.
type Container struct {
	Dir  string
	lock *os.File
}

// Create makes the state directory of a new container and locks it. The
// lock is held until Close (or until the process dies).
func (s Store) Create(rec Record) (*Container, error) {
	if err := os.MkdirAll(s.dir(), 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if rec.Name != "" {
		if _, err := s.Find(rec.Name); err == nil {
			return nil, fmt.Errorf("a container named %q already exists; remove it with slirprun rm %s", rec.Name, rec.Name)
		}
	}
	dir := s.Dir(rec.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	lf, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("state lock: %w", err)
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lf.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("state lock: %w", err)
	}
	c := &Container{Dir: dir, lock: lf}
	if err := c.Write(rec); err != nil {
		c.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

// Adopt takes over the lock of an existing state directory (a detached
// supervisor does this after its parent created the directory).
func (s Store) Adopt(id string) (*Container, error) {
	dir := s.Dir(id)
	lf, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("state lock: %w", err)
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lf.Close()
		return nil, fmt.Errorf("state lock of %s is held: %w", id, err)
	}
	return &Container{Dir: dir, lock: lf}, nil
}

// Write replaces state.json atomically.
func (c *Container) Write(rec Record) error { return writeRecord(c.Dir, rec) }

func writeRecord(dir string, rec Record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".state.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "state.json")); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// Unlock releases the lock without removing anything.
func (c *Container) Unlock() {
	if c.lock != nil {
		c.lock.Close()
		c.lock = nil
	}
}

// Close releases the lock.
func (c *Container) Close() { c.Unlock() }

// Remove deletes the state directory and releases the lock.
func (c *Container) Remove() error {
	err := os.RemoveAll(c.Dir)
	c.Unlock()
	return err
}

// Entry is a container found in the store.
type Entry struct {
	Record
	Dir     string
	Running bool
}

// List returns every container, oldest first.
func (s Store) List() ([]Entry, error) {
	ents, err := os.ReadDir(s.dir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		ent, err := s.load(e.Name())
		if err != nil {
			continue // being created or removed right now
		}
		out = append(out, ent)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

func (s Store) load(id string) (Entry, error) {
	dir := s.Dir(id)
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return Entry{}, err
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return Entry{}, fmt.Errorf("state of %s: %w", id, err)
	}
	return Entry{Record: rec, Dir: dir, Running: locked(filepath.Join(dir, "lock"))}, nil
}

// locked reports whether some process holds the lock file.
func locked(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return true
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// Find looks a container up by id, unique id prefix, or name.
func (s Store) Find(ref string) (Entry, error) {
	if ref == "" {
		return Entry{}, errors.New("no container given")
	}
	all, err := s.List()
	if err != nil {
		return Entry{}, err
	}
	var match []Entry
	for _, e := range all {
		if e.ID == ref || e.Name == ref {
			return e, nil
		}
		if strings.HasPrefix(e.ID, ref) {
			match = append(match, e)
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		return Entry{}, fmt.Errorf("no such container %q (slirprun ps lists them)", ref)
	}
	return Entry{}, fmt.Errorf("%q matches %d containers; give more of the id", ref, len(match))
}

// MarkExited records an exit status in a container's state.json; the
// watcher uses it when the supervisor died without writing one.
func MarkExited(dir string, code int) error {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return err
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return err
	}
	if rec.Exited {
		return nil
	}
	rec.Exited, rec.ExitCode, rec.Finished = true, code, time.Now()
	return writeRecord(dir, rec)
}

// Load reads a container's state.json from its directory.
func Load(dir string) (Record, error) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return Record{}, err
	}
	var rec Record
	err = json.Unmarshal(b, &rec)
	return rec, err
}

// WaitUnlocked blocks until nobody holds the lock in dir, or the timeout.
func WaitUnlocked(dir string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if !locked(filepath.Join(dir, "lock")) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
