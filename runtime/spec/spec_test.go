package spec

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParsePublish(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Publish
		wantErr string
	}{
		{in: "8080:80", want: Publish{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
		{in: "127.0.0.1:8080:80/udp", want: Publish{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, ContainerPort: 80, Proto: "udp"}},
		{in: ":8080:80", want: Publish{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
		{in: "18080:80/tcp", want: Publish{HostPort: 18080, ContainerPort: 80, Proto: "tcp"}},
		{in: "80", wantErr: "want [IP:]HOST_PORT"},
		{in: "0:80", wantErr: "host port"},
		{in: "8080:70000", wantErr: "container port"},
		{in: "8080:80/sctp", wantErr: "protocol"},
		{in: "[::1]:8080:80", wantErr: "only IPv4"},
		{in: "bad:8080:80", wantErr: "host address"},
	} {
		got, err := ParsePublish(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParsePublish(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePublish(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	p, _ := ParsePublish("127.0.0.1:8080:80/udp")
	if p.String() != "127.0.0.1:8080:80/udp" {
		t.Errorf("String() = %q", p.String())
	}
}

func FuzzParsePublish(f *testing.F) {
	for _, s := range []string{"8080:80", "1.2.3.4:1:2/udp", "::", "[::1]:1:2", "a:b:c/tcp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePublish(s)
		if err != nil {
			return
		}
		if p.HostPort == 0 || p.ContainerPort == 0 || (p.Proto != "tcp" && p.Proto != "udp") {
			t.Fatalf("ParsePublish(%q) accepted %+v", s, p)
		}
		// What String prints parses back to the same value.
		q, err := ParsePublish(p.String())
		if err != nil || q != p {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", s, q, err, p)
		}
	})
}

func TestParseVolume(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Volume
		wantErr bool
	}{
		{in: "/a:/b", want: Volume{Source: "/a", Target: "/b"}},
		{in: "/a/../c:/b/:ro", want: Volume{Source: "/c", Target: "/b", ReadOnly: true}},
		{in: "/a:/b:rw", want: Volume{Source: "/a", Target: "/b"}},
		{in: "a:/b", wantErr: true},
		{in: "/a:b", wantErr: true},
		{in: "/a:/", wantErr: true},
		{in: "/a:/b:zz", wantErr: true},
		{in: "/a", wantErr: true},
		// ".." inside a name is an ordinary file name, not a parent reference.
		{in: "/a:/b..", want: Volume{Source: "/a", Target: "/b.."}},
	} {
		got, err := ParseVolume(tc.in)
		if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("ParseVolume(%q) = %+v, %v; want %+v (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func FuzzParseVolume(f *testing.F) {
	for _, s := range []string{"/a:/b", "/a:/b:ro", "/:/x:rw,ro", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVolume(s)
		if err != nil {
			return
		}
		// Cleaned absolute paths never keep a ".." component; ".." inside a
		// name ("/x..") is an ordinary file name.
		if !strings.HasPrefix(v.Source, "/") || !strings.HasPrefix(v.Target, "/") || v.Target == "/" ||
			slices.Contains(strings.Split(v.Target, "/"), "..") || slices.Contains(strings.Split(v.Source, "/"), "..") {
			t.Fatalf("ParseVolume(%q) accepted %+v", s, v)
		}
	})
}

func TestParseEnv(t *testing.T) {
	lookup := func(k string) (string, bool) {
		if k == "HOSTVAR" {
			return "hv", true
		}
		return "", false
	}
	for _, tc := range []struct {
		in      string
		want    string
		ok      bool
		wantErr bool
	}{
		{"A=1", "A=1", true, false},
		{"A=", "A=", true, false},
		{"A=b=c", "A=b=c", true, false},
		{"HOSTVAR", "HOSTVAR=hv", true, false},
		{"MISSING", "", false, false},
		{"=x", "", false, true},
	} {
		got, ok, err := ParseEnv(tc.in, lookup)
		if got != tc.want || ok != tc.ok || (err != nil) != tc.wantErr {
			t.Errorf("ParseEnv(%q) = %q, %v, %v", tc.in, got, ok, err)
		}
	}
}

func TestParseEnvFile(t *testing.T) {
	in := "# comment\n\nA=1\n  B=two words\r\nHOSTVAR\nMISSING\nC=\"quoted\"\n"
	got, err := ParseEnvFile(strings.NewReader(in), func(k string) (string, bool) { return "hv", k == "HOSTVAR" })
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A=1", "B=two words", "HOSTVAR=hv", `C="quoted"`}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseEnvFile = %q, want %q", got, want)
	}
	if _, err := ParseEnvFile(strings.NewReader("ok=1\n=bad\n"), nil); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad line: error %v, want one naming line 2", err)
	}
}

func FuzzParseEnvFile(f *testing.F) {
	f.Add("A=1\n#c\nB\n")
	f.Add("=\n\x00=1")
	f.Fuzz(func(t *testing.T, s string) {
		kvs, err := ParseEnvFile(strings.NewReader(s), func(string) (string, bool) { return "v", true })
		if err != nil {
			return
		}
		for _, kv := range kvs {
			k, _, ok := strings.Cut(kv, "=")
			if !ok || k == "" || strings.ContainsRune(kv, 0) {
				t.Fatalf("ParseEnvFile(%q) produced %q", s, kv)
			}
		}
	})
}

func TestMergeEnv(t *testing.T) {
	got := MergeEnv([]string{"PATH=/bin", "A=1"}, []string{"A=2", "B=3"}, []string{"PATH=/usr/bin"})
	want := []string{"PATH=/usr/bin", "A=2", "B=3"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("MergeEnv = %q, want %q", got, want)
	}
}

func TestParseUser(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    User
		wantErr bool
	}{
		{"1000", User{User: "1000"}, false},
		{"1000:1000", User{User: "1000", Group: "1000"}, false},
		{"nobody:nogroup", User{User: "nobody", Group: "nogroup"}, false},
		{"", User{}, true},
		{":1", User{}, true},
		{"1:", User{}, true},
		{"a/b", User{}, true},
	} {
		got, err := ParseUser(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseUser(%q) = %+v, %v", tc.in, got, err)
		}
	}
}

func FuzzParseUser(f *testing.F) {
	f.Add("1000:1000")
	f.Add("root")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseUser(s)
		if err != nil {
			return
		}
		if u.User == "" || strings.ContainsAny(u.User+u.Group, ":\x00/\n") {
			t.Fatalf("ParseUser(%q) = %+v", s, u)
		}
	})
}
