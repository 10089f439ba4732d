// Package getopt parses command lines the way GNU getopt_long(3) does, so
// that a Go program can accept exactly the command lines a C program built on
// glibc accepts and reject the others with the same messages.
//
// Supported, as in glibc's default (permuting) mode:
//   - options and positional arguments may be interleaved; positionals keep
//     their order;
//   - "--" ends the options; a lone "-" is a positional argument;
//   - long options as "--name=value" or "--name value";
//   - short options with attached or separate values ("-m1400", "-m 1400")
//     and bundling ("-c6");
//   - unambiguous prefixes of long options ("--disable-h"); an exact name
//     wins over prefixes; an ambiguous prefix is rejected with glibc's
//     message listing the candidates in table order.
//
// Not supported: optional arguments ("::"), the "+", "-" and ":" optstring
// modes, POSIXLY_CORRECT, "-W foo" and getopt_long_only.
//
// One extension: a LongOption with NoAbbrev is matched only by its full
// name, so a program can add options without making any existing prefix
// ambiguous.
package getopt

import (
	"fmt"
	"strings"
)

// LongOption is one entry of the long option table (glibc's struct option).
type LongOption struct {
	// Name is the option name without the leading "--".
	Name string
	// HasArg says the option requires an argument.
	HasArg bool
	// Key is reported in Option.Key when this entry matches; it plays the
	// part of glibc's val. Give a long option the letter of its short form
	// to make them the same option. Entries with equal Key and HasArg are
	// aliases: a prefix matching several of them is not ambiguous. Empty
	// means Name.
	Key string
	// NoAbbrev makes the entry match only its full name, never a prefix
	// (an extension over glibc).
	NoAbbrev bool
}

func (l LongOption) key() string {
	if l.Key == "" {
		return l.Name
	}
	return l.Key
}

// Spec describes the options a program accepts.
type Spec struct {
	// Short is glibc's optstring: each option letter, followed by ':' when
	// it requires an argument, e.g. "ce:r:m:".
	Short string
	// Long is the long option table. Its order is the order in which
	// ambiguous candidates are listed.
	Long []LongOption
}

// Option is one option found on the command line.
type Option struct {
	// Key is the option's letter for short options and LongOption.Key for
	// long ones.
	Key string
	// Name is how the option is spelled in full: "-m" or "--mtu" (also
	// when the user typed a prefix such as "--mt").
	Name string
	// Arg is the option's argument; it is meaningful only for options that
	// take one.
	Arg string
}

// Parser walks a command line option by option, like repeated calls to
// getopt_long. It is not safe for concurrent use.
type Parser struct {
	spec     Spec
	shortArg map[byte]bool // option letter -> requires an argument
	argv0    string
	args     []string

	next        int      // index into args of the next element to look at
	nextChar    string   // rest of a bundle of short options being read
	positionals []string // non-option arguments seen so far, in order
	done        bool
}

// New returns a Parser for args (which excludes the program name). argv0 is
// the program name used as the prefix of error messages, as glibc uses
// argv[0]. New panics when spec is malformed, since a spec is a fixed table
// written by the programmer.
func New(spec Spec, argv0 string, args []string) *Parser {
	p := &Parser{
		spec:     spec,
		shortArg: make(map[byte]bool),
		argv0:    argv0,
		args:     args,
	}
	s := spec.Short
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case i == 0 && (c == '+' || c == '-' || c == ':'):
			panic(fmt.Sprintf("getopt: optstring mode %q is not supported", c))
		case c == ':' || c == ';' || c == '-':
			panic(fmt.Sprintf("getopt: %q cannot be an option letter in %q", c, s))
		}
		hasArg := i+1 < len(s) && s[i+1] == ':'
		if hasArg && i+2 < len(s) && s[i+2] == ':' {
			panic(fmt.Sprintf("getopt: optional arguments (%q in %q) are not supported", s[i:i+3], s))
		}
		if _, dup := p.shortArg[c]; dup {
			panic(fmt.Sprintf("getopt: option letter %q appears twice in %q", c, s))
		}
		p.shortArg[c] = hasArg
		if hasArg {
			i++
		}
	}
	for _, l := range spec.Long {
		if l.Name == "" || strings.Contains(l.Name, "=") {
			panic(fmt.Sprintf("getopt: bad long option name %q", l.Name))
		}
	}
	return p
}

// Next returns the next option. ok is false when there are no more options;
// Args then returns the positional arguments. An error (always an *Error)
// describes one bad element in glibc's words; the Parser has moved past it,
// so Next may be called again to carry on as glibc would.
func (p *Parser) Next() (opt Option, ok bool, err error) {
	if p.nextChar != "" {
		return p.nextShort()
	}
	for {
		if p.done || p.next >= len(p.args) {
			p.done = true
			return Option{}, false, nil
		}
		a := p.args[p.next]
		if a == "--" {
			// Everything after "--" is positional, after the ones seen so far.
			p.positionals = append(p.positionals, p.args[p.next+1:]...)
			p.next = len(p.args)
			p.done = true
			return Option{}, false, nil
		}
		if len(a) < 2 || a[0] != '-' {
			// A non-option (including a lone "-"): set it aside, as glibc's
			// permutation moves it after the options.
			p.positionals = append(p.positionals, a)
			p.next++
			continue
		}
		p.next++
		if a[1] == '-' {
			return p.long(a[2:])
		}
		p.nextChar = a[1:]
		return p.nextShort()
	}
}

// Args returns the positional arguments in order. It is complete once Next
// has returned ok == false.
func (p *Parser) Args() []string {
	return p.positionals
}

// nextShort handles the next letter of a bundle of short options.
func (p *Parser) nextShort() (Option, bool, error) {
	c := p.nextChar[:1] // a byte, not a rune: glibc works on chars
	p.nextChar = p.nextChar[1:]
	hasArg, known := p.shortArg[c[0]]
	if !known {
		return Option{}, true, &Error{Kind: InvalidOption, Argv0: p.argv0, Option: "-" + c}
	}
	opt := Option{Key: c, Name: "-" + c}
	if !hasArg {
		return opt, true, nil
	}
	switch {
	case p.nextChar != "":
		opt.Arg = p.nextChar
		p.nextChar = ""
	case p.next < len(p.args):
		// glibc takes the next element whatever it looks like, even "--".
		opt.Arg = p.args[p.next]
		p.next++
	default:
		return Option{}, true, &Error{Kind: MissingArgument, Argv0: p.argv0, Option: opt.Name}
	}
	return opt, true, nil
}

// long handles "--text", where text is what follows the dashes
// ("name" or "name=value").
func (p *Parser) long(text string) (Option, bool, error) {
	name, value, hasValue := strings.Cut(text, "=")
	found := -1
	for i, l := range p.spec.Long {
		if l.Name == name {
			found = i
			break
		}
	}
	if found < 0 {
		// No exact match: look for entries that name is a prefix of.
		var ambiguous []int
		for i, l := range p.spec.Long {
			if l.NoAbbrev || !strings.HasPrefix(l.Name, name) {
				continue
			}
			if found < 0 {
				found = i
				continue
			}
			// As glibc, compare each later match with the first one only.
			first := p.spec.Long[found]
			if first.HasArg != l.HasArg || first.key() != l.key() {
				if ambiguous == nil {
					ambiguous = []int{found}
				}
				ambiguous = append(ambiguous, i)
			}
		}
		if ambiguous != nil {
			e := &Error{Kind: AmbiguousOption, Argv0: p.argv0, Option: "--" + text}
			for _, i := range ambiguous {
				e.Candidates = append(e.Candidates, "--"+p.spec.Long[i].Name)
			}
			return Option{}, true, e
		}
	}
	if found < 0 {
		return Option{}, true, &Error{Kind: UnrecognizedOption, Argv0: p.argv0, Option: "--" + text}
	}
	l := p.spec.Long[found]
	opt := Option{Key: l.key(), Name: "--" + l.Name}
	switch {
	case hasValue && !l.HasArg:
		return Option{}, true, &Error{Kind: UnexpectedArgument, Argv0: p.argv0, Option: opt.Name}
	case hasValue:
		opt.Arg = value
	case l.HasArg && p.next < len(p.args):
		opt.Arg = p.args[p.next]
		p.next++
	case l.HasArg:
		return Option{}, true, &Error{Kind: MissingArgument, Argv0: p.argv0, Option: opt.Name}
	}
	return opt, true, nil
}

// ErrorKind says what is wrong with a command-line element.
type ErrorKind int

// The kinds of errors, each with glibc's message.
const (
	// UnrecognizedOption: "unrecognized option '--foo'".
	UnrecognizedOption ErrorKind = iota + 1
	// AmbiguousOption: "option '--dis' is ambiguous; possibilities: ...".
	AmbiguousOption
	// InvalidOption: an unknown short option, "invalid option -- 'x'".
	InvalidOption
	// MissingArgument: "option requires an argument -- 'm'" or
	// "option '--mtu' requires an argument".
	MissingArgument
	// UnexpectedArgument: "option '--configure' doesn't allow an argument".
	UnexpectedArgument
)

// Error is a bad command-line element. Its Error method returns the exact
// line glibc prints to stderr (without the newline).
type Error struct {
	Kind ErrorKind
	// Argv0 is the program name that prefixes the message.
	Argv0 string
	// Option is the option as the message shows it: "-x", "--foo=bar" (as
	// typed, for unrecognized and ambiguous ones) or "--mtu" (the full
	// name, for argument errors).
	Option string
	// Candidates lists, for AmbiguousOption, the matching long options
	// ("--name") in table order.
	Candidates []string
}

func (e *Error) Error() string {
	short := func() string { return strings.TrimPrefix(e.Option, "-") }
	switch e.Kind {
	case UnrecognizedOption:
		return fmt.Sprintf("%s: unrecognized option '%s'", e.Argv0, e.Option)
	case AmbiguousOption:
		var b strings.Builder
		fmt.Fprintf(&b, "%s: option '%s' is ambiguous; possibilities:", e.Argv0, e.Option)
		for _, c := range e.Candidates {
			fmt.Fprintf(&b, " '%s'", c)
		}
		return b.String()
	case InvalidOption:
		return fmt.Sprintf("%s: invalid option -- '%s'", e.Argv0, short())
	case MissingArgument:
		if strings.HasPrefix(e.Option, "--") {
			return fmt.Sprintf("%s: option '%s' requires an argument", e.Argv0, e.Option)
		}
		return fmt.Sprintf("%s: option requires an argument -- '%s'", e.Argv0, short())
	case UnexpectedArgument:
		return fmt.Sprintf("%s: option '%s' doesn't allow an argument", e.Argv0, e.Option)
	}
	return fmt.Sprintf("%s: bad option '%s'", e.Argv0, e.Option)
}
