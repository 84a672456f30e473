package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// MaxFileSize caps every file capstan reads from a source tree itself: manifests,
// bundles and env files. Real manifests are a few kilobytes; the cap keeps a stray
// data dump or a hostile file from exhausting memory in a long-running daemon.
const MaxFileSize = 4 << 20

// headSize is how much of an oversized or binary file is inspected to decide whether
// it was meant to be a capstan manifest.
const headSize = 64 << 10

// sourceTree is a source root with symlinks resolved, so that "inside the tree" can be
// decided on real paths.
type sourceTree struct {
	root string // absolute, symlinks resolved
}

func newSourceTree(root string) (*sourceTree, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("source path %s: %w", root, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("source path %s: %w", root, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Errorf("source path %s: %w", root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("source path %s is not a directory", root)
	}
	return &sourceTree{root: real}, nil
}

// rel renders an absolute path inside the tree as the slash-separated name problems use.
func (t *sourceTree) rel(abs string) string {
	r, err := filepath.Rel(t.root, abs)
	if err != nil {
		return filepath.ToSlash(abs)
	}
	return filepath.ToSlash(r)
}

// inside reports whether abs (already cleaned) is the root or below it.
func (t *sourceTree) inside(abs string) bool {
	r, err := filepath.Rel(t.root, abs)
	if err != nil {
		return false
	}
	return r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator)) && !filepath.IsAbs(r)
}

// resolve turns a path written in a document (relative to the document's directory)
// into an absolute path inside the tree. The returned path keeps the name as written
// (symlinks unresolved), so tools that resolve paths relative to a file's directory see
// the same layout the author did; only its real target is checked to stay inside.
// The returned message, when not empty, says what is wrong with p.
func (t *sourceTree) resolve(docDir, p string) (string, string) {
	if strings.TrimSpace(p) == "" {
		return "", "path is empty"
	}
	if filepath.IsAbs(p) || strings.HasPrefix(p, "/") || strings.HasPrefix(p, `\`) {
		return "", fmt.Sprintf("%q is an absolute path; write it relative to the document", p)
	}
	abs := filepath.Join(docDir, filepath.FromSlash(p))
	if !t.inside(abs) {
		return "", fmt.Sprintf("%q leaves the source tree; paths must stay inside it (no ..)", p)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Sprintf("%q does not exist", p)
		}
		return "", fmt.Sprintf("%q: %v", p, trimPathError(err))
	}
	if !t.inside(real) {
		return "", fmt.Sprintf("%q is a symlink to a path outside the source tree; symlinks must stay inside it", p)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", fmt.Sprintf("%q: %v", p, trimPathError(err))
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Sprintf("%q is not a regular file", p)
	}
	return abs, ""
}

// trimPathError drops the absolute path an *fs.PathError carries, so messages name only
// what the user wrote.
func trimPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// readCapped reads a whole file of at most MaxFileSize bytes. A larger file is an error
// that says how large it is; nothing beyond the cap is read.
func readCapped(abs string) ([]byte, error) {
	f, err := os.Open(abs)
	if err != nil {
		return nil, trimPathError(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, trimPathError(err)
	}
	if fi.Size() > MaxFileSize {
		return nil, tooLarge(fi.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, trimPathError(err)
	}
	if len(data) > MaxFileSize {
		return nil, tooLarge(int64(len(data)))
	}
	return data, nil
}

func tooLarge(size int64) error {
	return fmt.Errorf("file is %s; capstan reads files of at most %s", humanSize(size), humanSize(MaxFileSize))
}

// readHead returns up to n bytes from the start of a file.
func readHead(abs string, n int) ([]byte, error) {
	f, err := os.Open(abs)
	if err != nil {
		return nil, trimPathError(err)
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, int64(n)))
	if err != nil {
		return nil, trimPathError(err)
	}
	return buf, nil
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// binaryReason says why data is not text ("" when it is): a NUL byte (git's own test
// for binary files) or invalid UTF-8.
func binaryReason(data []byte) string {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return fmt.Sprintf("NUL byte at offset %d", i)
	}
	if !utf8.Valid(data) {
		for i := 0; i < len(data); {
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				return fmt.Sprintf("invalid UTF-8 at offset %d", i)
			}
			i += size
		}
	}
	return ""
}

// lineIndex maps byte offsets to 1-based line numbers.
type lineIndex []int // offsets at which each line starts

func newLineIndex(data []byte) lineIndex {
	idx := lineIndex{0}
	for i, b := range data {
		if b == '\n' {
			idx = append(idx, i+1)
		}
	}
	return idx
}

// line returns the 1-based line holding byte offset off.
func (idx lineIndex) line(off int64) int {
	lo, hi := 0, len(idx)-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if int64(idx[mid]) <= off {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo + 1
}
