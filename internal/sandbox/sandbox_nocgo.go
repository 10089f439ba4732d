//go:build !(linux && cgo)

package sandbox

import "os"

// constructorLinked says this binary has the constructor that builds the
// sandbox: not without cgo.
const constructorLinked = false

// constructorOutcome reports a request in the environment as an error:
// without the constructor nothing acted on it.
func constructorOutcome() outcome {
	_, plan := os.LookupEnv(EnvPlan)
	_, userns := os.LookupEnv(EnvUserns)
	if !plan && !userns {
		return outcome{}
	}
	return outcome{asked: true, err: errNoCgo}
}
