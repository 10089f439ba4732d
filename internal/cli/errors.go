package cli

import (
	"errors"
	"io"
	"strings"
)

// UsageError is a command line slirp4netns rejects. It holds everything
// slirp4netns prints before exiting, so the caller only prints and exits:
//
//	var uerr *cli.UsageError
//	if errors.As(err, &uerr) {
//		uerr.Print(os.Stdout, os.Stderr)
//		os.Exit(uerr.ExitCode)
//	}
type UsageError struct {
	// Argv0 is the program name for the usage text.
	Argv0 string
	// Warnings are the stdout lines printed before the error.
	Warnings []string
	// Stderr is the exact text for stderr, newlines included. Some
	// slirp4netns messages end without one; a bare usage has none at all.
	Stderr string
	// ShowUsage says Usage(Argv0) follows on stdout.
	ShowUsage bool
	// ExitCode is the exit status (1).
	ExitCode int
}

// Error returns the stderr text on one line.
func (e *UsageError) Error() string {
	msg := strings.Join(strings.Split(strings.TrimRight(e.Stderr, "\n"), "\n"), "; ")
	if msg == "" {
		return "missing positional arguments (see --help)"
	}
	return msg
}

// Print writes what slirp4netns prints for this error: the warnings and the
// usage text to stdout, the message to stderr.
func (e *UsageError) Print(stdout, stderr io.Writer) error {
	var out strings.Builder
	for _, w := range e.Warnings {
		out.WriteString(w + "\n")
	}
	if e.ShowUsage {
		out.WriteString(Usage(e.Argv0))
	}
	_, errOut := stdout.Write([]byte(out.String()))
	var errErr error
	if e.Stderr != "" {
		_, errErr = stderr.Write([]byte(e.Stderr))
	}
	return errors.Join(errOut, errErr)
}
