// Package docscheck keeps the documentation and the shell completions in
// step with the programs. It reads which options and commands a program's
// usage text lists, and which ones a man page source (the markdown that
// go-md2man turns into docs/man/*.1) or a completion script names, so that
// a test can fail as soon as one of them drifts from the others.
//
// The readers are small and line-based on purpose. They understand the two
// usage layouts of this project (slirp4netns' "-c, --configure  text"
// table and Go's flag.PrintDefaults), bracketed options in synopsis lines
// ("[-a]", "[--mode=auto|fast]"), and the definition-list layout of the man
// pages:
//
//	**-c**, **--configure**
//	:   Bring up the interface.
//
// Options are compared in their canonical spelling (see Canonical), so that
// Go's "-rootfs" and the documented "--rootfs" are the same option.
package docscheck

import (
	"regexp"
	"slices"
	"strings"
)

// Canonical returns the spelling of an option that documentation uses: one
// dash before a single character ("-c", "-6"), two before a longer name
// ("--configure", and "--rootfs" for Go's "-rootfs"), without any "=VALUE".
// It returns "" for a word that is not an option.
func Canonical(word string) string {
	name := strings.TrimLeft(word, "-")
	if len(word)-len(name) == 0 || len(word)-len(name) > 2 {
		return ""
	}
	if i := strings.IndexAny(name, "=["); i >= 0 {
		name = name[:i]
	}
	if !optionName.MatchString(name) {
		return ""
	}
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// optionName is what may follow the dashes of an option.
var optionName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]*$`)

// bracketed finds options in synopsis brackets and alternatives:
// "[-a]", "[-t SEC]", "[--rootfs DIR | --image PATH]".
var bracketed = regexp.MustCompile(`(?:\[|\|\s)\s*(-{1,2}[A-Za-z0-9][A-Za-z0-9-]*)`)

// UsageOptions returns the options a usage text lists, canonical, sorted
// and without duplicates. An option is listed when a line starts with it
// (followed by other spellings after ", ", then its value or its
// description), or when it appears in brackets as in "[-a]".
func UsageOptions(usage string) []string {
	var opts []string
	for _, line := range strings.Split(usage, "\n") {
		fields := strings.Fields(line)
		for i, f := range fields {
			c := Canonical(strings.TrimSuffix(f, ","))
			if c == "" || !strings.HasPrefix(f, "-") {
				break
			}
			opts = append(opts, c)
			// "-c, --configure": another spelling follows the comma.
			if !strings.HasSuffix(f, ",") || i == len(fields)-1 {
				break
			}
		}
		for _, m := range bracketed.FindAllStringSubmatch(line, -1) {
			if c := Canonical(m[1]); c != "" {
				opts = append(opts, c)
			}
		}
	}
	return sortedSet(opts)
}

// commandWord is a subcommand name.
var commandWord = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// UsageCommands returns the subcommands a usage text of program prog
// lists: the first word of each line of a "Commands:" block (up to the
// next blank line), and the word after prog in lines that start with it
// ("slirprun ps [-a]"). The result is sorted and without duplicates.
func UsageCommands(usage, prog string) []string {
	var cmds []string
	inBlock := false
	for _, line := range strings.Split(usage, "\n") {
		trimmed := strings.TrimSpace(line)
		fields := strings.Fields(trimmed)
		switch {
		case strings.EqualFold(trimmed, "commands:"):
			inBlock = true
			continue
		case trimmed == "":
			inBlock = false
			continue
		}
		if inBlock && commandWord.MatchString(fields[0]) {
			cmds = append(cmds, fields[0])
		}
		if len(fields) > 1 && fields[0] == prog && commandWord.MatchString(fields[1]) {
			cmds = append(cmds, fields[1])
		}
	}
	return sortedSet(cmds)
}

// Page is what a man page source documents.
type Page struct {
	// Title and Section come from the title line ("% SLIRP 1 ...").
	Title, Section string
	// Sections are the level-one headings ("NAME", "OPTIONS"...), in order.
	Sections []string
	// Options are the options named in bold in definition-list terms,
	// canonical, sorted and without duplicates.
	Options []string
	// Commands are the words a definition-list term starts with, in bold,
	// under a heading that contains "COMMANDS": "**ps** [**-a**]" documents
	// the command ps. Sorted and without duplicates.
	Commands []string
}

// boldOption finds an option written in bold: "**--mtu**=*MTU*".
var boldOption = regexp.MustCompile(`\*\*(-{1,2}[A-Za-z0-9][A-Za-z0-9-]*)`)

// boldCommand finds the command a term starts with: "**add** [...]".
var boldCommand = regexp.MustCompile(`^\*\*([a-z][a-z0-9-]*)\*\*`)

// ParsePage reads a man page source in go-md2man's markdown. A definition
// term is a line that starts at the margin and is followed by a line
// starting with ":", as in
//
//	**--cidr**=*CIDR*
//	:   The virtual IPv4 network.
//
// Lines in fenced code blocks are skipped.
func ParsePage(md string) Page {
	var p Page
	lines := strings.Split(strings.ReplaceAll(md, "\r\n", "\n"), "\n")
	section := ""
	inFence := false
	for i, line := range lines {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		switch {
		case i == 0 && strings.HasPrefix(line, "% "):
			f := strings.Fields(line[2:])
			if len(f) > 0 {
				p.Title = f[0]
			}
			if len(f) > 1 {
				p.Section = f[1]
			}
			continue
		case strings.HasPrefix(line, "# "):
			section = strings.TrimSpace(line[2:])
			p.Sections = append(p.Sections, section)
			continue
		}
		if line == "" || line[0] == ' ' || line[0] == '\t' || line[0] == ':' ||
			i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], ":") {
			continue
		}
		for _, m := range boldOption.FindAllStringSubmatch(line, -1) {
			if c := Canonical(m[1]); c != "" {
				p.Options = append(p.Options, c)
			}
		}
		if strings.Contains(strings.ToUpper(section), "COMMANDS") {
			if m := boldCommand.FindStringSubmatch(line); m != nil {
				p.Commands = append(p.Commands, m[1])
			}
		}
	}
	p.Options = sortedSet(p.Options)
	p.Commands = sortedSet(p.Commands)
	return p
}

// Mentions reports whether text contains word as a whole word: not as part
// of a longer option or name, so "--mtu" is not found in "--mtu-max" and
// "-c" not in "--configure".
func Mentions(text, word string) bool {
	if word == "" {
		return false
	}
	for i := 0; ; {
		j := strings.Index(text[i:], word)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(word)
		if (start == 0 || !isWordByte(text[start-1])) && (end == len(text) || !isWordByte(text[end])) {
			return true
		}
		i = start + 1
	}
}

// isWordByte says c continues an option or a name.
func isWordByte(c byte) bool {
	return c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// Missing returns the elements of want that have is false for, in order.
func Missing(want []string, has func(string) bool) []string {
	var out []string
	for _, w := range want {
		if !has(w) {
			out = append(out, w)
		}
	}
	return out
}

func sortedSet(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}
