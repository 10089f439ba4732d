//go:build linux && cgo

package sandbox

import (
	"reflect"
	"strings"
	"testing"
)

// These tests run the constructor's plan parser (C) through parsePlanC.

// checkConstructorAccepts fails the test when the constructor would refuse
// the plan text.
func checkConstructorAccepts(t *testing.T, text string) {
	t.Helper()
	if _, err := parsePlanC(text); err != nil {
		t.Errorf("the constructor refuses the plan: %v\n%s", err, text)
	}
}

func TestPlanRoundTripThroughC(t *testing.T) {
	es := []planEntry{
		{Kind: kindDir, Path: "/usr"},
		{Kind: kindDir, Path: "/usr/with space"},
		{Kind: kindSymlink, Path: "/var", Target: "../odd%name\nnewline"},
		{Kind: kindFile, Path: "/usr/with space/ünïcode\ttab"},
	}
	text, err := (&plan{entries: es}).encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := parsePlanC(text)
	if err != nil {
		t.Fatalf("parse %q: %v", text, err)
	}
	if !reflect.DeepEqual(got, es) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, es)
	}
	if got, err := parsePlanC(""); err != nil || len(got) != 0 {
		t.Errorf("empty plan: %v, %v", got, err)
	}
}

func TestPlanParserRejects(t *testing.T) {
	for _, text := range []string{
		"x /usr",              // unknown kind
		"dd /usr",             // kind of two letters
		"d usr",               // relative
		"d /",                 // the root itself
		"d /usr/",             // trailing slash
		"d /usr//lib",         // empty component
		"d /usr/../etc",       // dot-dot
		"d /./usr",            // dot
		"d /etc",              // bound whole
		"d /run/x",            // bound whole
		"d /usr /lib",         // too many fields
		"d",                   // no path
		"d  /usr",             // empty field
		"l /usr",              // no target
		"f 7 /usr/x",          // old format with a descriptor
		"f",                   // no path
		"d /usr\n",            // trailing newline: an empty line
		"d /a%00b",            // NUL
		"d /a%zzb",            // bad escape
		"d /a%4",              // short escape
		"l /var /x\nd /var/y", // below a link the plan made
		"l /var /x\nd /var",   // the link itself again
	} {
		if got, err := parsePlanC(text); err == nil {
			t.Errorf("parse %q = %+v, want an error", text, got)
		}
	}
	long := strings.Repeat("d /x\n", maxPlanEntries) + "d /y"
	if _, err := parsePlanC(long); err == nil {
		t.Errorf("plan of %d entries accepted", maxPlanEntries+1)
	}
	if _, err := parsePlanC("d /" + strings.Repeat("a", maxPlanBytes)); err == nil {
		t.Error("plan longer than the limit accepted")
	}
}

// FuzzPlanParse feeds the constructor's plan parser (C) arbitrary text: it
// must not crash, and what it accepts must survive encoding and parsing
// again unchanged.
func FuzzPlanParse(f *testing.F) {
	for _, seed := range []string{
		"",
		"d /usr",
		"d /usr\nd /usr/lib\nf /usr/lib/resolv.conf",
		"l /var/run ../run",
		"l /a%20b /x%25y\nf /c%0Ad",
		"d /etc",
		"f /x\n",
		"l /var /x\nd /var/y",
		"d /a%00",
		"q /x",
		"d " + strings.Repeat("/a", 3000),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if strings.IndexByte(text, 0) >= 0 {
			return // an environment variable cannot hold NUL
		}
		es, err := parsePlanC(text)
		if err != nil {
			return
		}
		again, err := (&plan{entries: es}).encode()
		if err != nil {
			t.Fatalf("accepted %q but cannot encode %+v: %v", text, es, err)
		}
		es2, err := parsePlanC(again)
		if err != nil {
			t.Fatalf("accepted %q, re-encoded as %q, refused: %v", text, again, err)
		}
		if len(es) == 0 && len(es2) == 0 {
			return
		}
		if !reflect.DeepEqual(es, es2) {
			t.Fatalf("%q -> %+v -> %q -> %+v", text, es, again, es2)
		}
	})
}

// FuzzEscapeField: any text without NUL survives escapeField and the C
// decoder, as a link target.
func FuzzEscapeField(f *testing.F) {
	for _, seed := range []string{"../run", "a b", "100%", "new\nline", "\x7f\x01", "ü"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, target string) {
		if target == "" || strings.IndexByte(target, 0) >= 0 || len(target) >= 4096 {
			return
		}
		text, err := (&plan{entries: []planEntry{{Kind: kindSymlink, Path: "/l", Target: target}}}).encode()
		if err != nil {
			t.Fatal(err)
		}
		es, err := parsePlanC(text)
		if err != nil {
			t.Fatalf("%q encoded as %q: %v", target, text, err)
		}
		if len(es) != 1 || es[0].Target != target {
			t.Fatalf("%q encoded as %q parsed as %+v", target, text, es)
		}
	})
}
