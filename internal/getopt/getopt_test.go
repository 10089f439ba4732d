package getopt

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// slirpSpec is slirp4netns 1.2.0's option table, in its order.
var slirpSpec = Spec{
	Short: "ce:r:m:a:6hv",
	Long: []LongOption{
		{Name: "configure", Key: "c"},
		{Name: "exit-fd", HasArg: true, Key: "e"},
		{Name: "ready-fd", HasArg: true, Key: "r"},
		{Name: "mtu", HasArg: true, Key: "m"},
		{Name: "cidr", HasArg: true},
		{Name: "disable-host-loopback"},
		{Name: "no-host-loopback"},
		{Name: "netns-type", HasArg: true},
		{Name: "userns-path", HasArg: true},
		{Name: "api-socket", HasArg: true, Key: "a"},
		{Name: "enable-ipv6", Key: "6"},
		{Name: "enable-sandbox"},
		{Name: "create-sandbox"},
		{Name: "enable-seccomp"},
		{Name: "help", Key: "h"},
		{Name: "version", Key: "v"},
		{Name: "outbound-addr", HasArg: true},
		{Name: "outbound-addr6", HasArg: true},
		{Name: "disable-dns"},
		{Name: "macaddress", HasArg: true},
		{Name: "target-type", HasArg: true},
	},
}

// result is everything a whole run of the parser produces, carrying on
// after errors as glibc (and getopt(1)) does.
type result struct {
	Opts   []Option
	Errors []string
	Args   []string
}

func runAll(spec Spec, argv0 string, args []string) result {
	var r result
	p := New(spec, argv0, args)
	// Each call consumes at least one byte or one element, which bounds the loop.
	limit := len(args) + len(strings.Join(args, "")) + 2
	for range limit {
		opt, ok, err := p.Next()
		if err != nil {
			r.Errors = append(r.Errors, err.Error())
			continue
		}
		if !ok {
			r.Args = p.Args()
			return r
		}
		r.Opts = append(r.Opts, opt)
	}
	panic(fmt.Sprintf("parser did not finish on %q", args))
}

func o(key, name, arg string) Option { return Option{Key: key, Name: name, Arg: arg} }

func TestParse(t *testing.T) {
	const p = "slirp4netns"
	for _, tc := range []struct {
		name string
		args []string
		want result
	}{
		{"empty", nil, result{}},
		{"positionals only", []string{"123", "tap0"}, result{Args: []string{"123", "tap0"}}},
		{"interleaved", []string{"-c", "123", "--api-socket", "/x", "tap11"},
			result{Opts: []Option{o("c", "-c", ""), o("a", "--api-socket", "/x")}, Args: []string{"123", "tap11"}}},
		{"long equals", []string{"--mtu=65520", "1", "t"},
			result{Opts: []Option{o("m", "--mtu", "65520")}, Args: []string{"1", "t"}}},
		{"long equals empty value", []string{"--cidr=", "1"},
			result{Opts: []Option{o("cidr", "--cidr", "")}, Args: []string{"1"}}},
		{"long separate value", []string{"--mtu", "65520"},
			result{Opts: []Option{o("m", "--mtu", "65520")}}},
		{"long separate value looks like option", []string{"--mtu", "--configure"},
			result{Opts: []Option{o("m", "--mtu", "--configure")}}},
		{"short attached", []string{"-m1400"}, result{Opts: []Option{o("m", "-m", "1400")}}},
		{"short separate", []string{"-r", "3"}, result{Opts: []Option{o("r", "-r", "3")}}},
		{"short separate takes dashdash", []string{"-r", "--", "x"},
			result{Opts: []Option{o("r", "-r", "--")}, Args: []string{"x"}}},
		{"bundle", []string{"-c6"}, result{Opts: []Option{o("c", "-c", ""), o("6", "-6", "")}}},
		{"bundle with value", []string{"-c6m1400"},
			result{Opts: []Option{o("c", "-c", ""), o("6", "-6", ""), o("m", "-m", "1400")}}},
		{"bundle with separate value", []string{"-cm", "1400", "pid"},
			result{Opts: []Option{o("c", "-c", ""), o("m", "-m", "1400")}, Args: []string{"pid"}}},
		{"short equals is the value", []string{"-m=1"}, result{Opts: []Option{o("m", "-m", "=1")}}},
		{"dashdash ends options", []string{"-c", "--", "-6", "--mtu"},
			result{Opts: []Option{o("c", "-c", "")}, Args: []string{"-6", "--mtu"}}},
		{"positionals before dashdash come first", []string{"a", "-c", "b", "--", "c"},
			result{Opts: []Option{o("c", "-c", "")}, Args: []string{"a", "b", "c"}}},
		{"lone dash is positional", []string{"-", "-c"},
			result{Opts: []Option{o("c", "-c", "")}, Args: []string{"-"}}},
		{"unique prefix", []string{"--disable-host"}, result{Opts: []Option{o("disable-host-loopback", "--disable-host-loopback", "")}}},
		{"prefix with value", []string{"--api=/s"}, result{Opts: []Option{o("a", "--api-socket", "/s")}}},
		{"one letter unique prefix", []string{"--u", "/p"}, result{Opts: []Option{o("userns-path", "--userns-path", "/p")}}},
		{"exact beats prefix", []string{"--outbound-addr=1"}, result{Opts: []Option{o("outbound-addr", "--outbound-addr", "1")}}},
		{"prefix of two with equal start is ambiguous", []string{"--outbound=1"},
			result{Errors: []string{p + ": option '--outbound=1' is ambiguous; possibilities: '--outbound-addr' '--outbound-addr6'"}}},
		{"ambiguous", []string{"--dis", "1"},
			result{Errors: []string{p + ": option '--dis' is ambiguous; possibilities: '--disable-host-loopback' '--disable-dns'"}, Args: []string{"1"}}},
		{"ambiguous in table order", []string{"--e"},
			result{Errors: []string{p + ": option '--e' is ambiguous; possibilities: '--exit-fd' '--enable-ipv6' '--enable-sandbox' '--enable-seccomp'"}}},
		{"unrecognized", []string{"--foo"}, result{Errors: []string{p + ": unrecognized option '--foo'"}}},
		{"unrecognized keeps value", []string{"--foo=bar"}, result{Errors: []string{p + ": unrecognized option '--foo=bar'"}}},
		{"three dashes", []string{"---mtu"}, result{Errors: []string{p + ": unrecognized option '---mtu'"}}},
		{"invalid short", []string{"-x"}, result{Errors: []string{p + ": invalid option -- 'x'"}}},
		{"colon is never an option", []string{"-:"}, result{Errors: []string{p + ": invalid option -- ':'"}}},
		{"invalid short in bundle continues", []string{"-cxc"},
			result{Opts: []Option{o("c", "-c", ""), o("c", "-c", "")}, Errors: []string{p + ": invalid option -- 'x'"}}},
		{"short missing argument", []string{"-m"}, result{Errors: []string{p + ": option requires an argument -- 'm'"}}},
		{"long missing argument", []string{"--mtu"}, result{Errors: []string{p + ": option '--mtu' requires an argument"}}},
		{"prefix missing argument names full option", []string{"--mt"}, result{Errors: []string{p + ": option '--mtu' requires an argument"}}},
		{"no argument allowed", []string{"--configure=1"}, result{Errors: []string{p + ": option '--configure' doesn't allow an argument"}}},
		{"no argument allowed via prefix", []string{"--conf=1"}, result{Errors: []string{p + ": option '--configure' doesn't allow an argument"}}},
		{"empty name matches everything", []string{"--=x"},
			result{Errors: []string{p + ": option '--=x' is ambiguous; possibilities: '--configure' '--exit-fd' '--ready-fd' '--mtu' '--cidr' '--disable-host-loopback' '--no-host-loopback' '--netns-type' '--userns-path' '--api-socket' '--enable-ipv6' '--enable-sandbox' '--create-sandbox' '--enable-seccomp' '--help' '--version' '--outbound-addr' '--outbound-addr6' '--disable-dns' '--macaddress' '--target-type'"}}},
		{"non-ASCII short option byte by byte", []string{"-é"},
			result{Errors: []string{p + ": invalid option -- '\xc3'", p + ": invalid option -- '\xa9'"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := runAll(slirpSpec, p, tc.args)
			if !reflect.DeepEqual(norm(got), norm(tc.want)) {
				t.Errorf("args %q:\n got %+v\nwant %+v", tc.args, got, tc.want)
			}
		})
	}
}

// norm makes nil and empty slices compare equal.
func norm(r result) result {
	if len(r.Opts) == 0 {
		r.Opts = nil
	}
	if len(r.Errors) == 0 {
		r.Errors = nil
	}
	if len(r.Args) == 0 {
		r.Args = nil
	}
	return r
}

func TestAliasesAreNotAmbiguous(t *testing.T) {
	// glibc does not call a prefix ambiguous when every match has the same
	// val and has_arg as the first one: they are the same option.
	spec := Spec{Long: []LongOption{
		{Name: "color", Key: "color", HasArg: true},
		{Name: "colour", Key: "color", HasArg: true},
		{Name: "colorless"},
		{Name: "colourful", Key: "color", HasArg: true},
	}}
	got := runAll(spec, "prog", []string{"--colou=red"})
	want := result{Opts: []Option{o("color", "--colour", "red")}}
	if !reflect.DeepEqual(norm(got), want) {
		t.Errorf("--colou=red: got %+v, want %+v", got, want)
	}
	// "--col" matches color, colour, colorless, colourful; only colorless
	// differs from the first match, so only those two are listed.
	got = runAll(spec, "prog", []string{"--col"})
	want = result{Errors: []string{"prog: option '--col' is ambiguous; possibilities: '--color' '--colorless'"}}
	if !reflect.DeepEqual(norm(got), want) {
		t.Errorf("--col: got %+v, want %+v", got, want)
	}
}

func TestNoAbbrev(t *testing.T) {
	spec := Spec{Short: "r:", Long: []LongOption{
		{Name: "ready-fd", HasArg: true, Key: "r"},
		{Name: "resolv-conf", HasArg: true, NoAbbrev: true},
	}}
	for _, tc := range []struct {
		args []string
		want result
	}{
		{[]string{"--r", "3"}, result{Opts: []Option{o("r", "--ready-fd", "3")}}},
		{[]string{"--re=3"}, result{Opts: []Option{o("r", "--ready-fd", "3")}}},
		{[]string{"--resolv-conf=/x"}, result{Opts: []Option{o("resolv-conf", "--resolv-conf", "/x")}}},
		{[]string{"--resolv-conf", "/x"}, result{Opts: []Option{o("resolv-conf", "--resolv-conf", "/x")}}},
		{[]string{"--resolv"}, result{Errors: []string{"p: unrecognized option '--resolv'"}}},
		{[]string{"--=x"}, result{Opts: []Option{o("r", "--ready-fd", "x")}}},
	} {
		got := runAll(spec, "p", tc.args)
		if !reflect.DeepEqual(norm(got), tc.want) {
			t.Errorf("args %q: got %+v, want %+v", tc.args, got, tc.want)
		}
	}
}

func TestNewRejectsBadSpecs(t *testing.T) {
	for _, spec := range []Spec{
		{Short: "+c"},
		{Short: ":c"},
		{Short: "-c"},
		{Short: "cc"},
		{Short: "m::"},
		{Short: "c;"},
		{Long: []LongOption{{Name: ""}}},
		{Long: []LongOption{{Name: "a=b"}}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%+v) did not panic", spec)
				}
			}()
			New(spec, "p", nil)
		}()
	}
}

func TestErrorKinds(t *testing.T) {
	for _, tc := range []struct {
		args []string
		kind ErrorKind
	}{
		{[]string{"--nope"}, UnrecognizedOption},
		{[]string{"--dis"}, AmbiguousOption},
		{[]string{"-z"}, InvalidOption},
		{[]string{"-e"}, MissingArgument},
		{[]string{"--help=1"}, UnexpectedArgument},
	} {
		_, _, err := New(slirpSpec, "p", tc.args).Next()
		e, ok := err.(*Error)
		if !ok || e.Kind != tc.kind {
			t.Errorf("args %q: error %#v, want kind %d", tc.args, err, tc.kind)
		}
	}
}

// canonical renders a parse result as an argument vector that means the same
// thing, for the round-trip property of the fuzz target.
func canonical(spec Spec, r result) []string {
	var out []string
	for _, opt := range r.Opts {
		takesArg := false
		if strings.HasPrefix(opt.Name, "--") {
			for _, l := range spec.Long {
				if "--"+l.Name == opt.Name {
					takesArg = l.HasArg
				}
			}
			if takesArg {
				out = append(out, opt.Name+"="+opt.Arg)
			} else {
				out = append(out, opt.Name)
			}
			continue
		}
		out = append(out, opt.Name)
		if strings.Contains(spec.Short, opt.Key+":") {
			out = append(out, opt.Arg)
		}
	}
	out = append(out, "--")
	return append(out, r.Args...)
}

func FuzzParser(f *testing.F) {
	for _, s := range []string{
		"-c\x00123\x00--api-socket\x00/x\x00tap11",
		"--dis\x001\x00tap0",
		"-cm1400\x00--\x00-x",
		"--=x",
		"-m",
		"--mtu",
		"--conf=1\x00-é",
		"--outbound\x00-\x00--disable-host",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var args []string
		if s != "" {
			args = strings.Split(s, "\x00")
		}
		if len(args) > 64 {
			args = args[:64]
		}
		r := runAll(slirpSpec, "prog", args)
		for _, e := range r.Errors {
			if !strings.HasPrefix(e, "prog: ") || len(e) <= len("prog: ") {
				t.Fatalf("error %q lacks the program prefix", e)
			}
		}
		if len(r.Opts)+len(r.Args) > 2*len(args)+len(strings.Join(args, "")) {
			t.Fatalf("more results than input: %+v from %q", r, args)
		}
		if len(r.Errors) > 0 {
			return
		}
		// Without errors, the canonical spelling parses to the same result.
		again := runAll(slirpSpec, "prog", canonical(slirpSpec, r))
		if !reflect.DeepEqual(norm(again), norm(r)) {
			t.Fatalf("round trip of %q changed the result:\n first %+v\nsecond %+v", args, r, again)
		}
	})
}
