//go:build !(linux && cgo)

package sandbox

import "testing"

// checkConstructorAccepts has no constructor to ask without cgo.
func checkConstructorAccepts(t *testing.T, text string) {}

func TestExecNeedsCgo(t *testing.T) {
	if err := Exec(NewState()); err != errNoCgo {
		t.Errorf("Exec without cgo: %v, want %v", err, errNoCgo)
	}
}
