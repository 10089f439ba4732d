package main

import "testing"

func TestDaemonProcs(t *testing.T) {
	for _, c := range []struct{ cpus, want int }{
		{1, 1}, {2, 1}, {3, 1}, {4, 2}, {8, 4}, {64, 32},
	} {
		if got := daemonProcs(c.cpus); got != c.want {
			t.Errorf("daemonProcs(%d) = %d, want %d", c.cpus, got, c.want)
		}
	}
}
