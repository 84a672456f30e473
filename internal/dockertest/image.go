package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
)

// ImageRef is the test image: internal/testapp as a static binary in a FROM scratch image.
const ImageRef = "capstan-testapp:dev"

// labelSource holds the hash of what the image was built from, so a rerun with unchanged
// sources reuses it without building.
const labelSource = "dev.capstan.testapp.source"

const testappPackage = "github.com/capstan-dev/capstan/internal/testapp"

const dockerfile = `FROM scratch
COPY testapp /testapp
ENTRYPOINT ["/testapp"]
`

var built struct {
	once sync.Once
	err  error
}

// Image makes sure the engine has ImageRef built from the current internal/testapp
// sources and returns its name. The build runs at most once per test process and not at
// all when the engine already holds an image built from the same sources.
func Image(t testing.TB) string {
	t.Helper()
	requireEngine(t)
	built.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		built.err = ensureImage(ctx)
	})
	if built.err != nil {
		t.Fatalf("test image %s: %v", ImageRef, built.err)
	}
	return ImageRef
}

// TagAs tags the test image under each of names (e.g. "wordpress:4.5.3"), so examples that
// name public images run without a registry. A name already held by an image that is not
// a build of the test image is left alone and fails the test: retagging it would silently
// replace someone's real image.
func TagAs(t testing.TB, names ...string) {
	t.Helper()
	ref := Image(t)
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	defer cli.Close()
	ctx := context.Background()
	want, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatalf("inspect %s: %v", ref, err)
	}
	for _, name := range names {
		have, err := cli.ImageInspect(ctx, name)
		switch {
		case err == nil && have.ID == want.ID:
			continue
		case err == nil && (have.Config == nil || have.Config.Labels[labelSource] == ""):
			t.Fatalf("image %s exists and is not capstan's test image; remove it (docker image rm %s) or use another engine", name, name)
		case err != nil && !cerrdefs.IsNotFound(err):
			t.Fatalf("inspect %s: %v", name, err)
		}
		if err := cli.ImageTag(ctx, ref, name); err != nil {
			t.Fatalf("tag %s as %s: %v", ref, name, err)
		}
	}
}

func ensureImage(ctx context.Context) error {
	dir, err := testappDir()
	if err != nil {
		return err
	}
	hash, err := sourceHash(dir)
	if err != nil {
		return err
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	if have, err := cli.ImageInspect(ctx, ImageRef); err == nil && have.Config != nil && have.Config.Labels[labelSource] == hash {
		return nil
	} else if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspect: %w", err)
	}

	bin, err := buildBinary(ctx, dir)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, []byte(dockerfile)}, {"testapp", 0o755, bin}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}); err != nil {
			return fmt.Errorf("build context: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return fmt.Errorf("build context: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("build context: %w", err)
	}
	resp, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{
		Tags:        []string{ImageRef},
		Labels:      map[string]string{labelSource: hash},
		Remove:      true,
		ForceRemove: true,
		// The classic builder needs no BuildKit session and no registry for FROM scratch.
		Version: build.BuilderV1,
	})
	if err != nil {
		return fmt.Errorf("image build: %w", err)
	}
	defer resp.Body.Close()
	return readBuildStream(resp.Body)
}

// readBuildStream drains the build's JSON message stream and returns the error it reports.
func readBuildStream(r io.Reader) error {
	dec := json.NewDecoder(r)
	var log strings.Builder
	for {
		var msg struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("image build: read output: %w", err)
		}
		log.WriteString(msg.Stream)
		if msg.Error != "" || msg.ErrorDetail.Message != "" {
			return fmt.Errorf("image build: %s %s\n%s", msg.Error, msg.ErrorDetail.Message, log.String())
		}
	}
}

// buildBinary compiles internal/testapp statically for the engine's platform.
func buildBinary(ctx context.Context, dir string) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "capstan-testapp-")
	if err != nil {
		return nil, fmt.Errorf("build testapp: %w", err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "testapp")
	// `go test` puts its own toolchain first on PATH for the processes it runs.
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %w\n%s", testappPackage, err, b)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("build testapp: %w", err)
	}
	return bin, nil
}

// testappDir finds the internal/testapp sources: next to this file when the test binary
// was built from a checkout, else wherever the go command says the package is.
func testappDir() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok {
		dir := filepath.Join(filepath.Dir(file), "..", "testapp")
		if _, err := os.Stat(filepath.Join(dir, "main.go")); err == nil {
			return dir, nil
		}
	}
	out, err := exec.Command("go", "list", "-f", "{{.Dir}}", testappPackage).Output()
	if err != nil {
		return "", fmt.Errorf("locate %s: %w", testappPackage, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// sourceHash identifies a build: the non-test Go files of the package, the toolchain and
// the target architecture.
func sourceHash(dir string) (string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return "", fmt.Errorf("hash testapp sources: %w", err)
	}
	sort.Strings(files)
	h := sha256.New()
	fmt.Fprintf(h, "%s %s/%s\n", runtime.Version(), "linux", runtime.GOARCH)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("hash testapp sources: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
