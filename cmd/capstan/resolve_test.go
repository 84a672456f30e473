package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/docker/docker/api/types/image"

	"github.com/capstan-dev/capstan/internal/dockertest"
)

// localRegistry is a minimal Docker registry (the v2 HTTP API: blob upload, blob and
// manifest reads, manifest push) in memory on 127.0.0.1 — enough for the engine to push
// the test image to it and to resolve its tag. The engine treats 127.0.0.0/8
// registries as insecure, so plain HTTP works. It counts manifest reads: each is the
// engine resolving a tag for a client that asked to pin digests.
type localRegistry struct {
	host      string
	manifests atomic.Int64

	mu       sync.Mutex
	blobs    map[string][]byte           // digest -> content
	uploads  map[string]*bytes.Buffer    // upload id -> content so far
	manifest map[string]registryManifest // "name:reference" (tag or digest) -> manifest
}

type registryManifest struct {
	mediaType, digest string
	body              []byte
}

func newLocalRegistry(t *testing.T) *localRegistry {
	t.Helper()
	r := &localRegistry{blobs: map[string][]byte{}, uploads: map[string]*bytes.Buffer{}, manifest: map[string]registryManifest{}}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

func digestOf(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

func (r *localRegistry) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	p := req.URL.Path
	switch {
	case p == "/v2/" || p == "/v2":
		w.WriteHeader(http.StatusOK)
	case strings.Contains(p, "/blobs/uploads/"):
		i := strings.Index(p, "/blobs/uploads/")
		name, id := strings.TrimPrefix(p[:i], "/v2/"), p[i+len("/blobs/uploads/"):]
		switch req.Method {
		case http.MethodPost:
			id = fmt.Sprintf("u%d", len(r.uploads)+1)
			r.uploads[id] = &bytes.Buffer{}
			w.Header().Set("Location", "/v2/"+name+"/blobs/uploads/"+id)
			w.Header().Set("Docker-Upload-UUID", id)
			w.Header().Set("Range", "0-0")
			w.WriteHeader(http.StatusAccepted)
		case http.MethodPatch, http.MethodPut:
			buf, ok := r.uploads[id]
			if !ok {
				http.Error(w, "unknown upload", http.StatusNotFound)
				return
			}
			_, _ = io.Copy(buf, req.Body)
			if req.Method == http.MethodPatch {
				w.Header().Set("Location", "/v2/"+name+"/blobs/uploads/"+id)
				w.Header().Set("Range", fmt.Sprintf("0-%d", buf.Len()-1))
				w.WriteHeader(http.StatusAccepted)
				return
			}
			d := digestOf(buf.Bytes())
			if want := req.URL.Query().Get("digest"); want != d {
				http.Error(w, "digest mismatch", http.StatusBadRequest)
				return
			}
			r.blobs[d] = buf.Bytes()
			delete(r.uploads, id)
			w.Header().Set("Docker-Content-Digest", d)
			w.Header().Set("Location", "/v2/"+name+"/blobs/"+d)
			w.WriteHeader(http.StatusCreated)
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	case strings.Contains(p, "/blobs/"):
		b, ok := r.blobs[p[strings.LastIndex(p, "/")+1:]]
		if !ok {
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.Header().Set("Docker-Content-Digest", digestOf(b))
		if req.Method == http.MethodGet {
			_, _ = w.Write(b)
		}
	case strings.Contains(p, "/manifests/"):
		i := strings.Index(p, "/manifests/")
		name, ref := strings.TrimPrefix(p[:i], "/v2/"), p[i+len("/manifests/"):]
		switch req.Method {
		case http.MethodPut:
			body, _ := io.ReadAll(req.Body)
			m := registryManifest{mediaType: req.Header.Get("Content-Type"), digest: digestOf(body), body: body}
			r.manifest[name+":"+ref], r.manifest[name+":"+m.digest] = m, m
			w.Header().Set("Docker-Content-Digest", m.digest)
			w.Header().Set("Location", "/v2/"+name+"/manifests/"+m.digest)
			w.WriteHeader(http.StatusCreated)
		case http.MethodGet, http.MethodHead:
			r.manifests.Add(1)
			m, ok := r.manifest[name+":"+ref]
			if !ok {
				http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
				return
			}
			w.Header().Set("Content-Type", m.mediaType)
			w.Header().Set("Content-Length", fmt.Sprint(len(m.body)))
			w.Header().Set("Docker-Content-Digest", m.digest)
			if req.Method == http.MethodGet {
				_, _ = w.Write(m.body)
			}
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	default:
		http.NotFound(w, req)
	}
}

// push tags the test image as ref and pushes it to the registry, returning its digest.
func (r *localRegistry) push(t *testing.T, e *swarmEnv, ref string) string {
	t.Helper()
	ctx := t.Context()
	if err := e.cli.ImageTag(ctx, dockertest.ImageRef, ref); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.cli.ImageRemove(ctx, ref, image.RemoveOptions{}) })
	rc, err := e.cli.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: base64.URLEncoding.EncodeToString([]byte("{}"))})
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	digest := ""
	for {
		var m struct {
			Error string `json:"error"`
			Aux   struct {
				Digest string `json:"Digest"`
			} `json:"aux"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("push %s: %v", ref, err)
		}
		if m.Error != "" {
			t.Fatalf("push %s: %s", ref, m.Error)
		}
		if m.Aux.Digest != "" {
			digest = m.Aux.Digest
		}
	}
	if digest == "" {
		t.Fatalf("push %s reported no digest", ref)
	}
	return digest
}

// TestApplyPinsImageDigests: resolveImage works as docker stack deploy's --resolve-image,
// against a real registry on 127.0.0.1: "changed" pins the digest on create and makes
// no registry call when an update keeps the image; "always" asks again on every write;
// "never" sends the tag as written. A pinned service diffs as unchanged.
func TestApplyPinsImageDigests(t *testing.T) {
	e := newSwarmEnv(t, "pin")
	reg := newLocalRegistry(t)
	ref := reg.host + "/capstan/testapp:v1"
	digest := reg.push(t, e, ref)

	stack := func(policy string) string {
		return strings.Replace(stackDocWith(true, true), "  prune:", "  resolveImage: "+policy+"\n  prune:", 1)
	}
	compose := func(message string) string {
		return "services:\n  web:\n    image: " + ref + "\n    environment:\n      MESSAGE: " + message + "\n"
	}
	image := func() string { return e.service("web").Spec.TaskTemplate.ContainerSpec.Image }

	e.write(map[string]string{"stack.yaml": stack("changed"), "compose.yaml": compose("one")})
	e.apply()
	if got, want := image(), ref+"@"+digest; got != want {
		t.Fatalf("resolveImage changed: created with image %q, want %q", got, want)
	}
	if reg.manifests.Load() == 0 {
		t.Error("the registry saw no manifest request on create")
	}
	if out, errOut, code := runCapstan(t, "diff", "--instance", e.stack, "--source", e.dir, "--detailed-exitcode"); code != 0 {
		t.Errorf("diff after a pinned create: exit %d, want 0 (the pin is not a change)\n%s\n%s", code, out, errOut)
	}

	// An update that keeps the image keeps the pin, and asks the registry nothing.
	before := reg.manifests.Load()
	e.write(map[string]string{"compose.yaml": compose("two")})
	e.apply()
	if got := image(); got != ref+"@"+digest {
		t.Errorf("resolveImage changed, image kept: updated to %q, want the pin kept", got)
	}
	if n := reg.manifests.Load() - before; n != 0 {
		t.Errorf("resolveImage changed, image kept: %d registry manifest requests, want none", n)
	}

	// always: every write asks again.
	before = reg.manifests.Load()
	e.write(map[string]string{"stack.yaml": stack("always"), "compose.yaml": compose("three")})
	e.apply()
	if got := image(); got != ref+"@"+digest {
		t.Errorf("resolveImage always: image %q, want %q", got, ref+"@"+digest)
	}
	if reg.manifests.Load() == before {
		t.Error("resolveImage always: the update asked the registry nothing")
	}

	// never: a new service gets the tag as written.
	e.write(map[string]string{"stack.yaml": stack("never"), "compose.yaml": compose("three") + "  api:\n    image: " + ref + "\n"})
	e.apply()
	if got := e.service("api").Spec.TaskTemplate.ContainerSpec.Image; got != ref {
		t.Errorf("resolveImage never: created with image %q, want %q", got, ref)
	}
	if svc := e.service("api"); svc.Spec.TaskTemplate.Placement != nil && len(svc.Spec.TaskTemplate.Placement.Platforms) > 0 {
		t.Errorf("resolveImage never: platforms %v recorded", svc.Spec.TaskTemplate.Placement.Platforms)
	}
}
