package buildinfo

import "testing"

func TestText(t *testing.T) {
	oldV, oldC := version, commit
	t.Cleanup(func() { version, commit = oldV, oldC })

	version, commit = "1.2.3", "0123abcd"
	if got, want := Text("slirpctl"), "slirpctl version 1.2.3\ncommit: 0123abcd\n"; got != want {
		t.Errorf("Text = %q, want %q", got, want)
	}

	// Unstamped (go build, go install): a version is still printed, and the
	// commit line only when the toolchain recorded one.
	version, commit = "", ""
	got := Text("slirprun")
	if Version() == "" {
		t.Error("Version() is empty when unstamped")
	}
	want := "slirprun version " + Version() + "\n"
	if c := Commit(); c != "" {
		want += "commit: " + c + "\n"
	}
	if got != want {
		t.Errorf("Text = %q, want %q", got, want)
	}
}
