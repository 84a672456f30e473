package main

import (
	"context"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strconv"
	"time"
)

// dirWatcher notices changed files in a local source directory by polling a cheap
// fingerprint — names, sizes, modes and modification times, no contents — so `capstan
// run` on a directory reacts to an edit within one poll. Polling rather than inotify
// keeps it portable and correct on bind mounts and network file systems; a walk of a
// manifests tree costs well under a millisecond. The reconcile itself digests contents,
// so a touch without a change triggers a reconcile that plans nothing.
type dirWatcher struct {
	dir   string
	every time.Duration
	log   *slog.Logger
}

func newDirWatcher(dir string, every time.Duration, log *slog.Logger) *dirWatcher {
	return &dirWatcher{dir: dir, every: every, log: log}
}

// run calls changed each time the fingerprint moves, until ctx is done.
func (w *dirWatcher) run(ctx context.Context, changed func()) {
	last, _ := fingerprint(w.dir)
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now, err := fingerprint(w.dir)
		if err != nil {
			w.log.Debug("watch: source directory unreadable", "dir", w.dir, "error", err.Error())
		}
		if now != last {
			last = w.settle(ctx, now)
			w.log.Info("source files changed", "dir", w.dir)
			changed()
		}
	}
}

// settle waits until the tree stops changing — the same fingerprint twice, settleStep
// apart — and returns that fingerprint. Editors and `cp` write a file in several steps
// (truncate, then write), and a reconcile that read it in between would report a
// half-written file as invalid. A tree that keeps changing is taken as it is after
// settleMax.
func (w *dirWatcher) settle(ctx context.Context, now uint64) uint64 {
	deadline := time.Now().Add(settleMax)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return now
		case <-time.After(settleStep):
		}
		next, _ := fingerprint(w.dir)
		if next == now {
			return now
		}
		now = next
	}
	return now
}

const (
	settleStep = 50 * time.Millisecond
	settleMax  = 2 * time.Second
)

// fingerprint hashes the tree's metadata; .git is skipped.
func fingerprint(dir string) (uint64, error) {
	h := fnv.New64a()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			h.Write([]byte("error " + p + "\x00"))
			return nil
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		h.Write([]byte(p))
		h.Write([]byte{0})
		h.Write([]byte(strconv.FormatInt(info.Size(), 10) + " " + info.Mode().String() + " " + strconv.FormatInt(info.ModTime().UnixNano(), 10)))
		h.Write([]byte{0})
		return nil
	})
	return h.Sum64(), err
}
