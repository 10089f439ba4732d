// Package passwd resolves user and group names against the /etc/passwd and
// /etc/group of a container's root filesystem (never the host's), the way
// `--user name:group` and an image's User field need.
package passwd

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Entry is one /etc/passwd line.
type Entry struct {
	Name  string
	UID   uint32
	GID   uint32
	Home  string
	Shell string
}

// Group is one /etc/group line.
type Group struct {
	Name    string
	GID     uint32
	Members []string
}

// ParsePasswd reads /etc/passwd content; malformed lines are skipped, as
// libc does.
func ParsePasswd(r io.Reader) ([]Entry, error) {
	var out []Entry
	err := scanLines(r, func(f []string) {
		if len(f) < 7 {
			return
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil || f[0] == "" {
			return
		}
		out = append(out, Entry{Name: f[0], UID: uint32(uid), GID: uint32(gid), Home: f[5], Shell: f[6]})
	})
	return out, err
}

// ParseGroup reads /etc/group content; malformed lines are skipped.
func ParseGroup(r io.Reader) ([]Group, error) {
	var out []Group
	err := scanLines(r, func(f []string) {
		if len(f) < 4 || f[0] == "" {
			return
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			return
		}
		g := Group{Name: f[0], GID: uint32(gid)}
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				g.Members = append(g.Members, m)
			}
		}
		out = append(out, g)
	})
	return out, err
}

func scanLines(r io.Reader, fn func([]string)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		fn(strings.Split(line, ":"))
	}
	return sc.Err()
}

// Resolved is the identity a container process runs as.
type Resolved struct {
	UID    uint32
	GID    uint32
	Groups []uint32
	Home   string
}

// Resolve turns user[:group] (names or numbers) into ids. A numeric user
// missing from passwd is fine (its group is then 0 unless given, and home
// is /); a name that passwd lacks is an error, as is an unknown group name.
func Resolve(user, group string, users []Entry, groups []Group) (Resolved, error) {
	res := Resolved{Home: "/"}
	var name string
	if n, err := strconv.ParseUint(user, 10, 32); err == nil {
		res.UID = uint32(n)
		for _, e := range users {
			if e.UID == res.UID {
				res.GID, res.Home, name = e.GID, e.Home, e.Name
				break
			}
		}
	} else {
		found := false
		for _, e := range users {
			if e.Name == user {
				res.UID, res.GID, res.Home, name, found = e.UID, e.GID, e.Home, e.Name, true
				break
			}
		}
		if !found {
			return Resolved{}, fmt.Errorf("user %q is not in the container's /etc/passwd", user)
		}
	}
	if res.Home == "" {
		res.Home = "/"
	}
	if group != "" {
		if n, err := strconv.ParseUint(group, 10, 32); err == nil {
			res.GID = uint32(n)
		} else {
			found := false
			for _, g := range groups {
				if g.Name == group {
					res.GID, found = g.GID, true
					break
				}
			}
			if !found {
				return Resolved{}, fmt.Errorf("group %q is not in the container's /etc/group", group)
			}
		}
	}
	if name != "" {
		for _, g := range groups {
			for _, m := range g.Members {
				if m == name && g.GID != res.GID {
					res.Groups = append(res.Groups, g.GID)
				}
			}
		}
	}
	return res, nil
}
