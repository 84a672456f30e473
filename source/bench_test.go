package source

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Benchmarks for the Git source (docs/benchmarks.md, "Git source"). They report, besides
// time, what crossed the wire as the server counted it:
//
//	go test -run '^$' -bench . -benchtime 20x ./source/
//
// The large repository (5,000 commits, about 20 MB packed) is generated once per run
// with git fast-import; nothing here runs in `make test`.

// benchCleanup holds what TestMain removes after the run.
var (
	benchCleanupMu sync.Mutex
	benchCleanup   []func()
)

func atBenchEnd(f func()) {
	benchCleanupMu.Lock()
	benchCleanup = append(benchCleanup, f)
	benchCleanupMu.Unlock()
}

func runBenchCleanup() {
	benchCleanupMu.Lock()
	defer benchCleanupMu.Unlock()
	for _, f := range benchCleanup {
		f()
	}
}

const (
	bigCommits = 5000
	bigFiles   = 500  // 50 directories of 10 files
	bigBlob    = 4096 // random bytes per file version, base64 in the file
)

var (
	bigOnce sync.Once
	bigDir  string // a gittestserver root holding big.git
	bigErr  error
)

// bigRepo returns a server root containing big.git: a first commit with bigFiles files,
// then commits that each rewrite one file with new random content, bigCommits in all.
func bigRepo(b *testing.B) string {
	b.Helper()
	bigOnce.Do(func() {
		bigDir, bigErr = os.MkdirTemp("", "capstan-bench-git-")
		if bigErr != nil {
			return
		}
		atBenchEnd(func() { os.RemoveAll(bigDir) })
		bigErr = generateBigRepo(filepath.Join(bigDir, "big.git"))
	})
	if bigErr != nil {
		b.Fatal(bigErr)
	}
	return bigDir
}

func gitCmd(dir string, stdin io.Reader, args ...string) error {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Stdin = stdin
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func bigPath(i int) string { return fmt.Sprintf("stacks/s%02d/file%d.txt", i/10%50, i%10) }

func generateBigRepo(bare string) error {
	if err := gitCmd("", nil, "init", "-q", "--bare", bare); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pr, pw := io.Pipe()
	go func() {
		w := bufio.NewWriterSize(pw, 1<<20)
		raw := make([]byte, bigBlob)
		blob := func(mark int) {
			for i := range raw {
				raw[i] = byte(rng.Uint32())
			}
			s := base64.StdEncoding.EncodeToString(raw)
			fmt.Fprintf(w, "blob\nmark :%d\ndata %d\n%s\n", mark, len(s), s)
		}
		mark := 0
		for c := 0; c < bigCommits; c++ {
			var files []int
			if c == 0 {
				for i := range bigFiles {
					files = append(files, i)
				}
			} else {
				files = []int{c % bigFiles}
			}
			first := mark + 1
			for range files {
				mark++
				blob(mark)
			}
			msg := fmt.Sprintf("change %d", c)
			fmt.Fprintf(w, "commit refs/heads/main\ncommitter Bench <bench@example.com> %d +0000\ndata %d\n%s\n", 1700000000+c*60, len(msg), msg)
			for i, f := range files {
				fmt.Fprintf(w, "M 100644 :%d %s\n", first+i, bigPath(f))
			}
			fmt.Fprintln(w)
		}
		pw.CloseWithError(w.Flush())
	}()
	if err := gitCmd(bare, pr, "fast-import", "--quiet"); err != nil {
		return err
	}
	return gitCmd(bare, nil, "repack", "-adq")
}

// pushOne appends one commit that rewrites one file of the repository at bare.
func pushOne(bare string, n int) error {
	raw := make([]byte, bigBlob)
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	s := base64.StdEncoding.EncodeToString(raw)
	msg := fmt.Sprintf("update %d", n)
	stream := fmt.Sprintf("blob\nmark :1\ndata %d\n%s\ncommit refs/heads/main\ncommitter Bench <bench@example.com> %d +0000\ndata %d\n%s\nfrom refs/heads/main^0\nM 100644 :1 %s\n\n",
		len(s), s, 1800000000+n, len(msg), msg, bigPath(n))
	return gitCmd(bare, strings.NewReader(stream), "fast-import", "--quiet")
}

func BenchmarkGitPollNoChange(b *testing.B) {
	srv := newGitServer(b)
	up := newUpstream(b, srv.url("config.git"), nil)
	up.commit("a", map[string]string{"stacks/web/compose.yaml": composeYAML("1"), "stacks/web/capstan.yaml": stackYAML})
	up.pushMain()
	for _, op := range []string{"Head", "Fetch"} {
		b.Run(op, func(b *testing.B) {
			s := newSource(b, Options{Source: srv.url("config.git"), Ref: "main", Path: "stacks"})
			mustFetch(b, s)
			srv.reset()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var err error
				if op == "Head" {
					_, err = s.Head(ctxT(b))
				} else {
					_, err = s.Fetch(ctxT(b))
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			reportWire(b, srv)
		})
	}
}

func reportWire(b *testing.B, srv *gitServer) {
	b.ReportMetric(float64(len(srv.requests()))/float64(b.N), "requests/op")
	b.ReportMetric(float64(srv.count("/git-upload-pack"))/float64(b.N), "upload-packs/op")
	b.ReportMetric(float64(srv.sent())/float64(b.N), "wire-bytes/op")
}

// packBytes is the size of a bare repository's packs: its history as stored.
func packBytes(b *testing.B, bare string) float64 {
	b.Helper()
	packs, err := filepath.Glob(filepath.Join(bare, "objects", "pack", "*.pack"))
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, p := range packs {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return float64(n)
}

func BenchmarkGitFirstFetch(b *testing.B) {
	root := bigRepo(b)
	srv := newGitServerAt(b, root)
	repoSize := packBytes(b, filepath.Join(root, "big.git"))
	for _, mode := range []struct {
		name string
		full bool
	}{{"shallow", false}, {"full", true}} {
		b.Run(mode.name, func(b *testing.B) {
			srv.reset()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				cache, err := os.MkdirTemp("", "capstan-bench-cache-")
				if err != nil {
					b.Fatal(err)
				}
				s := newSource(b, Options{Source: srv.url("big.git"), Ref: "main", CacheDir: cache, FullHistory: mode.full})
				b.StartTimer()
				mustFetch(b, s)
				b.StopTimer()
				os.RemoveAll(cache)
				b.StartTimer()
			}
			b.StopTimer()
			reportWire(b, srv)
			b.ReportMetric(repoSize, "repo-pack-bytes")
		})
	}
}

func BenchmarkGitOneCommitUpdate(b *testing.B) {
	root := bigRepo(b)
	// Updates change the repository: work on a copy so other benchmarks see 5,000 commits.
	own := b.TempDir()
	if err := gitCmd("", nil, "clone", "-q", "--bare", "--no-local", filepath.Join(root, "big.git"), filepath.Join(own, "big.git")); err != nil {
		b.Fatal(err)
	}
	srv := newGitServerAt(b, own)
	n := 0
	for _, mode := range []struct {
		name string
		full bool
	}{{"shallow", false}, {"full", true}} {
		b.Run(mode.name, func(b *testing.B) {
			s := newSource(b, Options{Source: srv.url("big.git"), Ref: "main", FullHistory: mode.full})
			mustFetch(b, s)
			srv.reset()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				n++
				if err := pushOne(filepath.Join(own, "big.git"), n); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				mustFetch(b, s)
			}
			b.StopTimer()
			reportWire(b, srv)
		})
	}
}
