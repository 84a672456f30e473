//go:build !unix

package source

import "context"

// lockFile is a no-op where flock does not exist: there, one process per cache
// directory is the rule (the in-process mutex still serializes goroutines).
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	return func() {}, ctx.Err()
}
