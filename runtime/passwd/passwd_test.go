package passwd

import (
	"reflect"
	"strings"
	"testing"
)

const passwdFile = "root:x:0:0:root:/root:/bin/sh\n# comment\nuser:x:1000:1000:U:/home/user:/bin/sh\nbad:x:y:0:::\nshort:x:1\n"
const groupFile = "root:x:0:\ntty:x:5:\nuser:x:1000:\nextra:x:2000:user,other\nwheel:x:10:root\n"

func TestResolve(t *testing.T) {
	users, err := ParsePasswd(strings.NewReader(passwdFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 {
		t.Fatalf("ParsePasswd kept %d entries, want 2: %+v", len(users), users)
	}
	groups, err := ParseGroup(strings.NewReader(groupFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, group string
		want        Resolved
		wantErr     bool
	}{
		{"user", "", Resolved{UID: 1000, GID: 1000, Groups: []uint32{2000}, Home: "/home/user"}, false},
		{"1000", "", Resolved{UID: 1000, GID: 1000, Groups: []uint32{2000}, Home: "/home/user"}, false},
		{"1000", "tty", Resolved{UID: 1000, GID: 5, Groups: []uint32{2000}, Home: "/home/user"}, false},
		{"4242", "", Resolved{UID: 4242, GID: 0, Home: "/"}, false},
		{"4242", "77", Resolved{UID: 4242, GID: 77, Home: "/"}, false},
		{"root", "", Resolved{UID: 0, GID: 0, Groups: []uint32{10}, Home: "/root"}, false},
		{"nobody", "", Resolved{}, true},
		{"user", "nogroup", Resolved{}, true},
	} {
		got, err := Resolve(tc.user, tc.group, users, groups)
		if (err != nil) != tc.wantErr || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Resolve(%q, %q) = %+v, %v; want %+v", tc.user, tc.group, got, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(passwdFile, groupFile, "user", "")
	f.Add("a:b:c", "::::", "0", "0")
	f.Fuzz(func(t *testing.T, pw, gr, user, group string) {
		users, err1 := ParsePasswd(strings.NewReader(pw))
		groups, err2 := ParseGroup(strings.NewReader(gr))
		if err1 != nil || err2 != nil {
			return
		}
		r, err := Resolve(user, group, users, groups)
		if err == nil && r.Home == "" {
			t.Fatalf("Resolve(%q, %q) gave an empty home", user, group)
		}
	})
}
