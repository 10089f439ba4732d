package tap

import (
	"context"
	"fmt"
)

// Slim turns the helper into the minimal socket server of
// internal/sockserve, in place: a C loop that answers Socket requests (and
// PrepareExec) with a few hundred KiB resident instead of a Go runtime's
// 10-15 MiB. Call it once the tap is open: the helper opens no tap after
// it. The helper keeps its PID and stays a child of this process.
func (n *Namespace) Slim(ctx context.Context) error {
	if _, _, err := n.roundTrip(ctx, request{kind: kindSlim}, false); err != nil {
		return fmt.Errorf("slim the tap helper: %w", err)
	}
	return nil
}
