package tap

// PID is the process ID of the helper. It lives inside the target's network
// namespace, so a daemon that waits for that namespace to empty leaves it
// out.
func (n *Namespace) PID() int { return n.pid }
