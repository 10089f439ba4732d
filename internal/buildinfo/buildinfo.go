// Package buildinfo says which build of slirp a binary is: the version and
// commit the Makefile stamps in, or else what the Go toolchain recorded.
// Every program of the project prints them with --version.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Stamped by the Makefile with -ldflags "-X
// github.com/slirp-dev/slirp/internal/buildinfo.version=1.0.0 -X
// github.com/slirp-dev/slirp/internal/buildinfo.commit=abc123". When
// unset, Version and Commit fall back to the build information Go records
// (module version, VCS revision).
var (
	version string
	commit  string
)

// Version is this build's version, "dev" when nothing says.
func Version() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}

// Commit is this build's VCS revision ("-dirty" when the tree had local
// changes), or "" when unknown.
func Commit() string {
	if commit != "" {
		return commit
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" && modified == "true" {
		rev += "-dirty"
	}
	return rev
}

// Text is the --version text of a program other than the daemon (whose
// text follows slirp4netns'): "NAME version V" and, when known, a
// "commit: C" line.
func Text(name string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s version %s\n", name, Version())
	if c := Commit(); c != "" {
		fmt.Fprintf(&b, "commit: %s\n", c)
	}
	return b.String()
}
