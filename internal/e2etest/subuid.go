package e2etest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slirp-dev/slirp/internal/nstest"
)

// The subordinate id range the tests give nstest.TestUser (rootlesskit and
// slirprun refuse to start without one).
const (
	SubuidStart = 400000
	SubuidCount = 65536
)

// RequireSubuid gives nstest.TestUser the range SubuidStart, SubuidCount
// in /etc/subuid and /etc/subgid when the line is not there yet, and
// removes it again when the test ends. When a file already gives the user
// a different range, skipOther skips the test (for a caller that counts on
// this range), and otherwise that range is kept.
func RequireSubuid(t testing.TB, skipOther bool) {
	t.Helper()
	nstest.RequireTools(t, "newuidmap", "newgidmap")
	line := fmt.Sprintf("%s:%d:%d\n", nstest.TestUser, SubuidStart, SubuidCount)
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		b, err := os.ReadFile(f)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(line)) {
			continue // left by an earlier run, or set up by CI
		}
		if bytes.Contains(b, []byte(nstest.TestUser+":")) {
			if skipOther {
				t.Skipf("%s already gives %s a different range; the test assumes %s", f, nstest.TestUser, strings.TrimSpace(line))
			}
			continue
		}
		if len(b) > 0 && !bytes.HasSuffix(b, []byte("\n")) {
			b = append(b, '\n')
		}
		if err := os.WriteFile(f, append(b, line...), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cur, err := os.ReadFile(f)
			if err != nil {
				return
			}
			_ = os.WriteFile(f, bytes.Replace(cur, []byte(line), nil, 1), 0o644)
		})
	}
}

// ChownAll gives uid and gid everything under root (links themselves, not
// what they point to).
func ChownAll(root string, uid, gid uint32) error {
	return filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(uid), int(gid))
	})
}
