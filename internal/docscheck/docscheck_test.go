package docscheck

import (
	"slices"
	"testing"
)

func TestCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"-c":                  "-c",
		"--configure":         "--configure",
		"-6":                  "-6",
		"-rootfs":             "--rootfs", // Go's flag package
		"--rootfs":            "--rootfs",
		"--mtu=MTU":           "--mtu",
		"--blackhole=P[,...]": "--blackhole",
		"-p[IP:]":             "-p",
		"--":                  "",
		"-":                   "",
		"---x":                "",
		"configure":           "",
		"--=x":                "",
		"-[x]":                "",
		"--é":                 "",
	} {
		if got := Canonical(in); got != want {
			t.Errorf("Canonical(%q) = %q, want %q", in, got, want)
		}
	}
}

// slirp4netnsUsage is the layout of slirp's --help (internal/cli).
const slirp4netnsUsage = `Usage: /usr/bin/slirp [OPTION]... PID|PATH [TAPNAME]
User-mode networking for unprivileged network namespaces.

-c, --configure          bring up the interface
-e, --exit-fd=FD         specify the FD for terminating slirp4netns
--netns-type=TYPE ` + "\t" + ` specify network namespace type ([path|pid|tapfd], default=pid)
--userns-path=PATH` + "\t" + ` specify user namespace path
--disable-dns            disables 10.0.2.3 (or configured internal ip) to host dns redirect
--blackhole=PREFIX[,...] silently drop everything to and from these addresses -x
-h, --help               show this help and exit
`

// goFlagUsage is the layout of Go's flag.PrintDefaults, with a synopsis.
const goFlagUsage = `Usage:
  prog [OPTIONS] [--rootfs DIR | --image PATH[:TAG]] [--] CMD [ARGS...]
  prog ps [-a]            list containers
  prog stop [-t SEC] ID   stop a container
  prog [OPTIONS] CMD      not a command
Run options:
  -6	enable IPv6 in the network (fd00::/64)
  -allow-host-loopback
    	let the container reach the host's 127.0.0.1 (same as -zz in prose)
  -e KEY=VAL
    	set environment variable KEY=VAL
  -p [IP:]HOST:CONTAINER[/tcp|udp]
    	publish [IP:]HOST:CONTAINER[/tcp|udp]
`

// commandsUsage is the layout of slirpctl's usage.
const commandsUsage = `Usage: ctl [--api-socket PATH] [--json] COMMAND [ARGS]

Commands:
  add [--mode=auto|fast|preserve] SPEC...   publish ports
  ls                                        list the forwards
  Rm                                        not a command word

Options:
  --api-socket PATH   the daemon's API socket
  --json              print JSON instead of tables
`

func TestUsageOptions(t *testing.T) {
	for _, tc := range []struct {
		name, usage string
		want        []string
	}{
		{"slirp4netns", slirp4netnsUsage, []string{
			"--blackhole", "--configure", "--disable-dns", "--exit-fd", "--help",
			"--netns-type", "--userns-path", "-c", "-e", "-h"}},
		{"go flag", goFlagUsage, []string{
			"--allow-host-loopback", "--image", "--rootfs", "-6", "-a", "-e", "-p", "-t"}},
		{"commands", commandsUsage, []string{"--api-socket", "--json", "--mode"}},
		{"empty", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := UsageOptions(tc.usage); !slices.Equal(got, tc.want) {
				t.Errorf("UsageOptions = %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestUsageCommands(t *testing.T) {
	if got, want := UsageCommands(goFlagUsage, "prog"), []string{"ps", "stop"}; !slices.Equal(got, want) {
		t.Errorf("UsageCommands(go flag) = %q, want %q", got, want)
	}
	if got, want := UsageCommands(commandsUsage, "ctl"), []string{"add", "ls"}; !slices.Equal(got, want) {
		t.Errorf("UsageCommands(commands) = %q, want %q", got, want)
	}
	if got := UsageCommands(slirp4netnsUsage, "slirp"); len(got) != 0 {
		t.Errorf("UsageCommands(slirp4netns) = %q, want none", got)
	}
}

const pageSource = "% PROG 1 \"\" \"slirp\" \"User Commands\"\n" + `
# NAME

prog - does things

# SYNOPSIS

**prog** [**--not-a-term**] *ARG*

# OPTIONS

**-c**, **--configure**
:   Bring up the interface; not **--in-text**.

**--mtu**=*MTU*
:   The MTU.

    **--indented** is not a term
:   even before a colon line.

` + "```" + `
**--fenced**
:   skipped
` + "```" + `

# COMMANDS

**add** [**--mode**=*MODE*] *SPEC*...
:   Publish ports.

**ls**
:   List.

# EXIT STATUS

**0**
:   Success.

# ENVIRONMENT

**SLIRP_API_SOCKET**
:   The socket.
`

func TestParsePage(t *testing.T) {
	p := ParsePage(pageSource)
	if p.Title != "PROG" || p.Section != "1" {
		t.Errorf("title %q section %q, want PROG 1", p.Title, p.Section)
	}
	if want := []string{"NAME", "SYNOPSIS", "OPTIONS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT"}; !slices.Equal(p.Sections, want) {
		t.Errorf("Sections = %q, want %q", p.Sections, want)
	}
	if want := []string{"--configure", "--mode", "--mtu", "-c"}; !slices.Equal(p.Options, want) {
		t.Errorf("Options = %q, want %q", p.Options, want)
	}
	if want := []string{"add", "ls"}; !slices.Equal(p.Commands, want) {
		t.Errorf("Commands = %q, want %q", p.Commands, want)
	}
}

func TestMentions(t *testing.T) {
	const script = `opts='--mtu= --configure -c'
args=( {-e+,--exit-fd=}'[exit]' '--log-level=[level]:level:(debug info)' )
complete -F _prog prog`
	for word, want := range map[string]bool{
		"--mtu":       true,
		"--configure": true,
		"-c":          true,
		"-e":          true,
		"--exit-fd":   true,
		"--log-level": true,
		"--log":       false, // a prefix of --log-level
		"--exit":      false,
		"-m":          false,
		"--":          false, // only inside longer words
		"info":        true,
		"":            false,
	} {
		if got := Mentions(script, word); got != want {
			t.Errorf("Mentions(%q) = %v, want %v", word, got, want)
		}
	}
}

func TestMissing(t *testing.T) {
	has := map[string]bool{"a": true, "c": true}
	if got := Missing([]string{"a", "b", "c", "d"}, func(s string) bool { return has[s] }); !slices.Equal(got, []string{"b", "d"}) {
		t.Errorf("Missing = %q, want [b d]", got)
	}
}
