package docscheck

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// These tests hold the documentation to the programs as they are built from
// this tree: every option and command their usage lists must be in the man
// page source (docs/man/PROG.1.md), in the rendered man page, and in the
// bash and zsh completions (contrib/completion), and the completions must
// offer them when asked; make install must put everything in place.

// program is one of the binaries the documentation covers.
type program struct {
	name string
	// helps are the command lines that print the usage (to stdout or
	// stderr); together they list every option and command.
	helps [][]string
	// extraCommands may be documented although the usage does not list
	// them ("slirprun run", the implicit default).
	extraCommands []string
}

var programs = []program{
	{name: "slirp", helps: [][]string{{"--help"}}},
	{name: "slirpctl", helps: [][]string{{"--help"}}},
	{name: "slirprun", helps: [][]string{{"--help"}, {"ps", "--help"}}, extraCommands: []string{"run"}},
}

// binDir holds the programs, built once by binaries and removed by
// TestMain.
var (
	binDir    string
	buildOnce sync.Once
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// repoRoot is the module's root directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	return root
}

// binaries builds slirp, slirpctl and slirprun from this tree (once) and
// returns the directory that holds them.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "docscheck-bin-")
		if buildErr != nil {
			return
		}
		args := []string{"build", "-o", binDir + "/"}
		if raceEnabled {
			args = append(args, "-race")
		}
		for _, p := range programs {
			args = append(args, "github.com/slirp-dev/slirp/cmd/"+p.name)
		}
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// usages caches what usage returns, by program name.
var usages sync.Map

// usage runs every help command line of p and returns their output.
func usage(t *testing.T, p program) string {
	t.Helper()
	if u, ok := usages.Load(p.name); ok {
		return u.(string)
	}
	bin := filepath.Join(binaries(t), p.name)
	var all strings.Builder
	for _, args := range p.helps {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", p.name, strings.Join(args, " "), err, out)
		}
		all.Write(out)
		all.WriteString("\n")
	}
	u := all.String()
	if len(UsageOptions(u)) == 0 {
		t.Fatalf("%s: no option found in its usage:\n%s", p.name, u)
	}
	usages.Store(p.name, u)
	return u
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func contains(list []string) func(string) bool {
	return func(s string) bool { return slices.Contains(list, s) }
}

// TestManPagesDocumentEveryOption checks each man page source against its
// program: every option and command of the usage is documented as a
// definition term, and every documented option that the usage does not
// list is one the program really accepts.
func TestManPagesDocumentEveryOption(t *testing.T) {
	root := repoRoot(t)
	for _, p := range programs {
		t.Run(p.name, func(t *testing.T) {
			u := usage(t, p)
			src := filepath.Join(root, "docs", "man", p.name+".1.md")
			page := ParsePage(readFile(t, src))

			if page.Title != strings.ToUpper(p.name) || page.Section != "1" {
				t.Errorf("%s: title line names %q section %q, want %q section 1", src, page.Title, page.Section, strings.ToUpper(p.name))
			}
			for _, s := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "SEE ALSO"} {
				if !slices.Contains(page.Sections, s) {
					t.Errorf("%s: no %s section", src, s)
				}
			}
			if miss := Missing(UsageOptions(u), contains(page.Options)); len(miss) > 0 {
				t.Errorf("%s does not document %q of `%s --help`: add a definition term such as\n\n**%s**=*VALUE*\n:   What it does.", src, miss, p.name, miss[0])
			}
			cmds := UsageCommands(u, p.name)
			if miss := Missing(cmds, contains(page.Commands)); len(miss) > 0 {
				t.Errorf("%s does not document the commands %q in its COMMANDS section", src, miss)
			}
			if extra := Missing(page.Commands, contains(append(cmds, p.extraCommands...))); len(extra) > 0 {
				t.Errorf("%s documents commands %q that `%s --help` does not list", src, extra, p.name)
			}
			// Options documented beyond the usage (-h, deprecated
			// spellings) must exist: the program accepts them before
			// --help and exits 0, and refuses a made-up one.
			bin := filepath.Join(binaries(t), p.name)
			for _, opt := range Missing(page.Options, contains(UsageOptions(u))) {
				if out, err := exec.Command(bin, opt, "--help").CombinedOutput(); err != nil {
					t.Errorf("%s documents %s, which `%s --help` does not list and `%s %s --help` refuses: %v\n%s", src, opt, p.name, p.name, opt, err, out)
				}
			}
			if err := exec.Command(bin, "--no-such-option-docscheck", "--help").Run(); err == nil {
				t.Errorf("%s accepts a made-up option, so the check above proves nothing", p.name)
			}
		})
	}
}

// md2man renders the man page source src to roff with the pinned
// go-md2man of tools/go.mod, as make man does.
func md2man(t *testing.T, root, src string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(strings.TrimSuffix(src, ".md")))
	cmd := exec.Command("go", "-C", filepath.Join(root, "tools"), "tool", "go-md2man", "-in", src, "-out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go-md2man %s: %v\n%s", src, err, b)
	}
	return out
}

// TestManPagesRender renders each page with go-md2man and, where groff is
// installed, formats it: without a warning, and with every option of the
// usage in the text a reader sees.
func TestManPagesRender(t *testing.T) {
	root := repoRoot(t)
	groff, groffErr := exec.LookPath("groff")
	for _, p := range programs {
		t.Run(p.name, func(t *testing.T) {
			roff := md2man(t, root, filepath.Join(root, "docs", "man", p.name+".1.md"))
			text := readFile(t, roff)
			if want := ".TH " + strings.ToUpper(p.name) + " 1 "; !strings.Contains(text, "\n"+want) {
				t.Fatalf("%s has no %q line:\n%s", roff, want, text[:min(len(text), 300)])
			}
			if groffErr != nil {
				t.Skip("groff is not installed (Debian package groff-base): cannot check the formatted page")
			}
			var stderr bytes.Buffer
			check := exec.Command(groff, "-t", "-man", "-Tascii", "-ww", "-z", roff)
			check.Stderr = &stderr
			if err := check.Run(); err != nil || stderr.Len() > 0 {
				t.Errorf("groff warns about %s: %v\n%s", roff, err, stderr.String())
			}
			// No hyphenation and long lines, so that no option is split.
			out, err := exec.Command(groff, "-t", "-man", "-Tascii", "-rHY=0", "-rLL=300n",
				"-P-c", "-P-b", "-P-o", "-P-u", roff).Output()
			if err != nil {
				t.Fatalf("groff %s: %v", roff, err)
			}
			rendered := string(out)
			if miss := Missing(UsageOptions(usage(t, p)), func(o string) bool { return Mentions(rendered, o) }); len(miss) > 0 {
				t.Errorf("the formatted %s.1 does not show %q", p.name, miss)
			}
		})
	}
}

// completionFiles are the bash and zsh completions of p.
func completionFiles(root string, p program) (bash, zsh string) {
	return filepath.Join(root, "contrib", "completion", "bash", p.name),
		filepath.Join(root, "contrib", "completion", "zsh", "_"+p.name)
}

// TestCompletionScriptsNameEveryOption checks that the completion scripts
// name every option and command of the usage.
func TestCompletionScriptsNameEveryOption(t *testing.T) {
	root := repoRoot(t)
	for _, p := range programs {
		t.Run(p.name, func(t *testing.T) {
			u := usage(t, p)
			want := append(UsageOptions(u), UsageCommands(u, p.name)...)
			bash, zsh := completionFiles(root, p)
			for _, file := range []string{bash, zsh} {
				script := readFile(t, file)
				if miss := Missing(want, func(w string) bool { return Mentions(script, w) }); len(miss) > 0 {
					t.Errorf("%s does not name %q of `%s --help`", file, miss, p.name)
				}
			}
		})
	}
}

// bashComplete asks the bash completion of words[0] to complete words.
func bashComplete(t *testing.T, root string, words ...string) []string {
	t.Helper()
	bashFile, _ := completionFiles(root, program{name: words[0]})
	if words[0] == "slirp4netns" {
		bashFile, _ = completionFiles(root, program{name: "slirp"})
	}
	script, err := filepath.Abs(filepath.Join("testdata", "complete.bash"))
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--norc", "--noprofile", script, bashFile}, words...)
	cmd := exec.Command("bash", args...)
	cmd.Dir = t.TempDir() // file name completion sees an empty directory
	// Keep the completions from asking a real daemon or container state.
	cmd.Env = append(os.Environ(), "SLIRP_API_SOCKET=", "PATH="+filepath.Join(root, "no-such-dir")+":/usr/bin:/bin")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("bash completion of %q: %v\n%s", words, err, ee.Stderr)
		}
		t.Fatalf("bash completion of %q: %v", words, err)
	}
	return strings.Fields(string(out))
}

// canonicalSet returns the canonical options among words.
func canonicalSet(words []string) []string {
	var out []string
	for _, w := range words {
		if c := Canonical(w); c != "" {
			out = append(out, c)
		}
	}
	return sortedSet(out)
}

// offeredOptions completes "-" after the program name and after each of
// its commands, and returns every option offered, canonical.
func offeredOptions(t *testing.T, complete func(t *testing.T, words ...string) []string, p program, cmds []string) []string {
	t.Helper()
	offered := canonicalSet(complete(t, p.name, "-"))
	for _, c := range cmds {
		offered = sortedSet(append(offered, canonicalSet(complete(t, p.name, c, "-"))...))
	}
	return offered
}

func TestBashCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("bash is needed for this test")
	}
	root := repoRoot(t)
	complete := func(t *testing.T, words ...string) []string { return bashComplete(t, root, words...) }

	t.Run("every option is offered", func(t *testing.T) {
		for _, p := range programs {
			u := usage(t, p)
			offered := offeredOptions(t, complete, p, UsageCommands(u, p.name))
			if miss := Missing(UsageOptions(u), contains(offered)); len(miss) > 0 {
				t.Errorf("bash completion of %s does not offer %q", p.name, miss)
			}
		}
	})

	for _, tc := range []struct {
		words []string
		want  []string
		// more allows candidates beyond want (commands from PATH).
		more bool
	}{
		{words: []string{"slirp", "--netns-t"}, want: []string{"--netns-type="}},
		{words: []string{"slirp", "--netns-type", "=", ""}, want: []string{"pid", "path", "tapfd"}},
		{words: []string{"slirp", "--netns-type", "=", "ta"}, want: []string{"tapfd"}},
		{words: []string{"slirp", "--log-format=j"}, want: []string{"--log-format=json"}},
		{words: []string{"slirp", "--log-level", ""}, want: []string{"debug", "info", "warn", "error"}},
		{words: []string{"slirp", "-m", ""}, want: []string{"1500", "65520"}},
		{words: []string{"slirp", "--target-type", "=", ""}, want: []string{"netns", "bess"}},
		{words: []string{"slirp", "-c", "1", ""}, want: []string{"tap0"}},
		{words: []string{"slirp4netns", "--disable-"}, want: []string{"--disable-host-loopback", "--disable-dns"}},
		{words: []string{"slirpctl", ""}, want: []string{"add", "ls", "rm", "stats", "conns", "info", "netem", "partition", "help"}},
		{words: []string{"slirpctl", "partition", ""}, want: []string{"on", "off"}},
		{words: []string{"slirpctl", "netem", ""}, want: []string{"show", "set", "clear"}},
		{words: []string{"slirpctl", "--json", "st"}, want: []string{"stats"}},
		{words: []string{"slirpctl", "add", "--mode", "=", ""}, want: []string{"auto", "fast", "preserve"}},
		{words: []string{"slirpctl", "add", "--mode=p"}, want: []string{"--mode=preserve"}},
		{words: []string{"slirpctl", "ls", "--j"}, want: []string{"--json"}},
		{words: []string{"slirprun", "p"}, want: []string{"ps", "port"}, more: true},
		{words: []string{"slirprun", "--network", ""}, want: []string{"slirp", "none"}},
		{words: []string{"slirprun", "-userns=s"}, want: []string{"-userns=single", "-userns=subuid"}},
		{words: []string{"slirprun", "--cap-add", "net_ad"}, want: []string{"NET_ADMIN"}},
		{words: []string{"slirprun", "--security-opt", "seccomp"}, want: []string{"seccomp=unconfined"}},
		{words: []string{"slirprun", "rm", "-"}, want: []string{"--state-dir", "-f", "-t"}},
		// Past the container's command, options are the command's own.
		{words: []string{"slirprun", "-p", "8080:80", "--rm", "true", "-"}},
	} {
		t.Run(strings.Join(tc.words, " "), func(t *testing.T) {
			got := complete(t, tc.words...)
			if miss := Missing(tc.want, contains(got)); len(miss) > 0 {
				t.Errorf("offered %q, missing %q", got, miss)
			}
			if extra := Missing(got, contains(tc.want)); len(extra) > 0 && !tc.more {
				t.Errorf("offered %q, unexpected %q", got, extra)
			}
		})
	}
}

// zshComplete asks zsh's completion system, with the completions of this
// tree, to complete words on a pseudo-terminal.
func zshComplete(t *testing.T, root, zsh string, words ...string) []string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "candidates")
	script, err := filepath.Abs(filepath.Join("testdata", "complete.zsh"))
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-f", script, filepath.Join(root, "contrib", "completion", "zsh"), out}, words...)
	cmd := exec.Command(zsh, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "SLIRP_API_SOCKET=", "HOME="+t.TempDir())
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("zsh completion of %q: %v\n%s", words, err, b)
	}
	var got []string
	for _, l := range strings.Split(readFile(t, out), "\n") {
		if l != "" && l != "END" {
			got = append(got, l)
		}
	}
	return sortedSet(got)
}

func TestZshCompletion(t *testing.T) {
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		t.Skip("zsh is not installed (Debian package zsh): cannot run the zsh completions")
	}
	root := repoRoot(t)
	for _, p := range programs {
		_, file := completionFiles(root, p)
		if out, err := exec.Command(zsh, "-n", file).CombinedOutput(); err != nil {
			t.Errorf("zsh -n %s: %v\n%s", file, err, out)
		}
	}
	complete := func(t *testing.T, words ...string) []string { return zshComplete(t, root, zsh, words...) }

	t.Run("every option is offered", func(t *testing.T) {
		for _, p := range programs {
			u := usage(t, p)
			offered := offeredOptions(t, complete, p, UsageCommands(u, p.name))
			if miss := Missing(UsageOptions(u), contains(offered)); len(miss) > 0 {
				t.Errorf("zsh completion of %s does not offer %q", p.name, miss)
			}
		}
	})
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{"slirp", "--netns-type="}, []string{"pid", "path", "tapfd"}},
		{[]string{"slirp4netns", "--log-format="}, []string{"text", "json"}},
		{[]string{"slirpctl", ""}, []string{"add", "ls", "rm", "stats", "conns", "info", "netem", "partition", "help"}},
		{[]string{"slirpctl", "add", "--mode="}, []string{"auto", "fast", "preserve"}},
		{[]string{"slirprun", "--network="}, []string{"slirp", "none"}},
		{[]string{"slirprun", "--userns="}, []string{"single", "subuid"}},
	} {
		t.Run(strings.Join(tc.words, " "), func(t *testing.T) {
			got := complete(t, tc.words...)
			if miss := Missing(tc.want, contains(got)); len(miss) > 0 {
				t.Errorf("offered %q, missing %q", got, miss)
			}
		})
	}
}

// TestMakeInstall runs make install into a temporary PREFIX, with the
// binaries this test built (-o build: make does not build them again), and
// checks what it installed.
func TestMakeInstall(t *testing.T) {
	root := repoRoot(t)
	bins := binaries(t)
	tmp := t.TempDir()
	prefix := filepath.Join(tmp, "prefix")
	runMake(t, root, "-o", "build", "install",
		"PREFIX="+prefix, "INSTALL_FROM="+bins, "MANOUT="+filepath.Join(tmp, "man"))

	for _, p := range programs {
		bin := filepath.Join(prefix, "bin", p.name)
		if fi, err := os.Stat(bin); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v, mode %v; want an executable", bin, err, fi.Mode())
		}
		page := filepath.Join(prefix, "share", "man", "man1", p.name+".1")
		if !strings.Contains(readFile(t, page), ".TH "+strings.ToUpper(p.name)+" 1") {
			t.Errorf("%s is not the man page of %s", page, p.name)
		}
		bash, zsh := completionFiles(root, p)
		for src, dst := range map[string]string{
			bash: filepath.Join(prefix, "share", "bash-completion", "completions", p.name),
			zsh:  filepath.Join(prefix, "share", "zsh", "site-functions", "_"+p.name),
		} {
			if readFile(t, src) != readFile(t, dst) {
				t.Errorf("%s is not a copy of %s", dst, src)
			}
		}
	}
	for link, target := range map[string]string{
		filepath.Join(prefix, "bin", "slirp4netns"):                                     "slirp",
		filepath.Join(prefix, "share", "man", "man1", "slirp4netns.1"):                  "slirp.1",
		filepath.Join(prefix, "share", "bash-completion", "completions", "slirp4netns"): "slirp",
	} {
		if got, err := os.Readlink(link); err != nil || got != target {
			t.Errorf("%s links to %q (%v), want %q", link, got, err, target)
		}
	}
	// Called by that name, slirp answers as slirp4netns does: podman and
	// rootlesskit read this.
	out, err := exec.Command(filepath.Join(prefix, "bin", "slirp4netns"), "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "slirp4netns version ") || !strings.Contains(string(out), "SLIRP_CONFIG_VERSION_MAX: 4") {
		t.Errorf("slirp4netns --version: %v\n%s", err, out)
	}
	// man finds the installed pages by name.
	if manBin, err := exec.LookPath("man"); err == nil {
		cmd := exec.Command(manBin, "-w", "slirpctl")
		cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(prefix, "share", "man"))
		out, err := cmd.Output()
		if want := filepath.Join(prefix, "share", "man", "man1", "slirpctl.1"); err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("man -w slirpctl = %q (%v), want %s", out, err, want)
		}
	}
}

// runMake runs make in dir with args and fails the test if it fails.
func runMake(t *testing.T, dir string, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is needed for this test")
	}
	cmd := exec.Command("make", append([]string{"-C", dir}, args...)...)
	// Under make test, the outer make's settings (jobserver descriptors
	// this process does not have) must not reach this make.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestMakeRelease builds the release binaries and checks that they are
// static (no program interpreter, no shared library) and say the version
// and commit they were stamped with.
func TestMakeRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every program again without the test cache's flags")
	}
	const version, commit = "9.9.9-releasetest", "0123abcdef"
	dir := t.TempDir()
	runMake(t, repoRoot(t), "release", "RELEASEDIR="+dir, "VERSION="+version, "COMMIT="+commit)

	for _, p := range programs {
		bin := filepath.Join(dir, p.name)
		f, err := elf.Open(bin)
		if err != nil {
			t.Errorf("%s: %v", p.name, err)
			continue
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
				t.Errorf("%s has a %v segment: it is not statically linked", p.name, prog.Type)
			}
		}
		if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
			t.Errorf("%s needs shared libraries %q (%v)", p.name, libs, err)
		}
		f.Close()

		flag := "--version"
		if p.name == "slirp" {
			flag = "-v" // slirp4netns' spelling, which podman and rootlesskit use
		}
		out, err := exec.Command(bin, flag).Output()
		first, rest, _ := strings.Cut(string(out), "\n")
		if err != nil || !strings.HasSuffix(first, version) || !strings.Contains(rest, "commit: "+commit+"\n") {
			t.Errorf("%s %s: %v\n%s", p.name, flag, err, out)
		}
	}
	if got, err := os.Readlink(filepath.Join(dir, "slirp4netns")); err != nil || got != "slirp" {
		t.Errorf("slirp4netns links to %q (%v), want slirp", got, err)
	}
}
