package docscheck

import (
	"slices"
	"strings"
	"testing"
)

// checkCanonicalSet fails unless opts is sorted, free of duplicates, and
// made of canonical options that all appear (by name) in src.
func checkCanonicalSet(t *testing.T, what string, opts []string, src string) {
	t.Helper()
	if !slices.IsSorted(opts) || len(slices.Compact(slices.Clone(opts))) != len(opts) {
		t.Fatalf("%s = %q: not a sorted set", what, opts)
	}
	for _, o := range opts {
		if Canonical(o) != o {
			t.Fatalf("%s: %q is not canonical", what, o)
		}
		if !strings.Contains(src, strings.TrimLeft(o, "-")) {
			t.Fatalf("%s: %q does not come from the input", what, o)
		}
	}
}

func FuzzUsage(f *testing.F) {
	for _, s := range []string{slirp4netnsUsage, goFlagUsage, commandsUsage, "", "-", "--", "[-", "| --x", "-a,", "-a, -b, --c=1 d"} {
		f.Add(s, "prog")
	}
	f.Fuzz(func(t *testing.T, usage, prog string) {
		checkCanonicalSet(t, "UsageOptions", UsageOptions(usage), usage)
		cmds := UsageCommands(usage, prog)
		if !slices.IsSorted(cmds) {
			t.Fatalf("UsageCommands = %q: not sorted", cmds)
		}
		for _, c := range cmds {
			if !commandWord.MatchString(c) || !strings.Contains(usage, c) {
				t.Fatalf("UsageCommands: %q is not a command word of the input", c)
			}
		}
	})
}

func FuzzParsePage(f *testing.F) {
	for _, s := range []string{pageSource, "", "% X", "# COMMANDS\n**a**\n:", "**-x**\n:\n```\n**-y**\n:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, md string) {
		p := ParsePage(md)
		checkCanonicalSet(t, "Options", p.Options, md)
		for _, c := range p.Commands {
			if !strings.Contains(md, "**"+c+"**") {
				t.Fatalf("command %q is not in bold in the input", c)
			}
		}
	})
}

func FuzzMentions(f *testing.F) {
	f.Add("--mtu= --configure -c", "--mtu")
	f.Add("", "")
	f.Add("--a--a", "--a")
	f.Fuzz(func(t *testing.T, text, word string) {
		got := Mentions(text, word)
		if got && !strings.Contains(text, word) {
			t.Fatalf("Mentions(%q, %q) = true for a word that is not there", text, word)
		}
		// Alone on a line, any word made of word bytes is mentioned.
		if word != "" && strings.IndexFunc(word, func(r rune) bool { return r > 127 || !isWordByte(byte(r)) }) < 0 {
			if !Mentions(text+"\n"+word+"\n", word) {
				t.Fatalf("Mentions(%q) = false for a line of its own", word)
			}
		}
	})
}
