package main

import (
	"strings"
	"sync"
)

// limitedBuffer keeps the first 4 KB written to it: enough of a helper's
// standard error for an error message. It is safe for the goroutine
// os/exec copies with.
type limitedBuffer struct {
	mu  sync.Mutex
	buf []byte // guarded by mu
}

const limitedBufferSize = 4096

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := limitedBufferSize - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.TrimSpace(string(b.buf))
}

// shellJoin quotes a command line for a POSIX shell, for the report.
func shellJoin(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = shellQuote(a)
	}
	return strings.Join(out, " ")
}

// shellQuote leaves words made of safe characters alone (placeholders such
// as $PID stay readable) and single-quotes everything else.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,$@%+", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
