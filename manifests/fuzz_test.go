package manifests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/capstan-dev/capstan/resource"
)

// Seeds come from every manifest and bundle in testdata/ and examples/, plus a few
// hand-written edge cases; `make fuzz` then mutates them for FUZZTIME each.

func addSeeds(f *testing.F, exts ...string) {
	f.Helper()
	var n int
	for _, root := range []string{"testdata", filepath.Join("..", "examples")} {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			for _, ext := range exts {
				if strings.HasSuffix(p, ext) {
					if data, err := os.ReadFile(p); err == nil && len(data) < 64<<10 {
						f.Add(data)
						n++
					}
				}
			}
			return nil
		})
	}
	if n == 0 {
		f.Fatalf("no seed files with %v found", exts)
	}
}

func FuzzStackDocument(f *testing.F) {
	addSeeds(f, ".yaml", ".yml")
	f.Add([]byte("apiVersion: capstan.dev/v1alpha1\nkind: Stack\nmetadata: {name: a}\nspec: {bundle: a.dab, prune: false, dependsOn: [b]}\n"))
	f.Add([]byte("---\n---\napiVersion: capstan.dev/v1alpha1\nkind: Stack\nmetadata: &m {name: a}\nspec: {<<: *m}\n...\n"))
	f.Add([]byte("apiVersion: capstan.dev/v1alpha1\nkind: Stack\nspec: {variables: {A: 1, B: true, C: null}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		stacks, _, problems := decodeManifest("f.yaml", data)
		for _, p := range problems {
			if p.File != "f.yaml" || p.Message == "" {
				t.Fatalf("malformed problem %+v", p)
			}
		}
		for _, s := range stacks {
			if s.invalid {
				if !problems.HasErrors() {
					t.Fatalf("stack %q marked invalid without an error", s.name)
				}
				continue
			}
			if msg := checkStackName(s.name); msg != "" {
				t.Fatalf("accepted stack name %q: %s", s.name, msg)
			}
			if (len(s.spec.Compose) > 0) == (s.spec.Bundle != "") {
				t.Fatalf("accepted stack %q without exactly one of compose and bundle", s.name)
			}
			st := s.settings()
			switch st.ResolveImage {
			case resource.ResolveNever, resource.ResolveChanged, resource.ResolveAlways:
			default:
				t.Fatalf("accepted resolveImage %q", st.ResolveImage)
			}
		}
	})
}

func FuzzRouteDocument(f *testing.F) {
	addSeeds(f, ".yaml", ".yml")
	f.Add([]byte("apiVersion: capstan.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec:\n  service: {stack: s, name: w, targetPort: 80}\n  loadBalancer: {id: lb-1, region: cn-hangzhou}\n  listener: {protocol: https, port: 443, certificateId: c}\n"))
	f.Add([]byte("apiVersion: capstan.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec: {listener: {protocol: udp, port: 53, bandwidth: -1}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, routes, _ := decodeManifest("f.yaml", data)
		for _, r := range routes {
			rt := r.route
			l := rt.Listener
			if _, ok := schedulers[l.Protocol]; !ok {
				t.Fatalf("accepted protocol %q", l.Protocol)
			}
			if l.Port < 1 || l.Port > 65535 || rt.Service.TargetPort < 1 || rt.Service.TargetPort > 65535 {
				t.Fatalf("accepted ports %d -> %d", l.Port, rt.Service.TargetPort)
			}
			if (l.Protocol == "https") != (l.CertificateID != "") {
				t.Fatalf("accepted certificateId %q on %s", l.CertificateID, l.Protocol)
			}
			if l.Bandwidth == nil || rt.Backends.Weight < 1 || rt.Backends.Weight > 100 || rt.Backends.NodeRole == "" || l.Scheduler == "" {
				t.Fatalf("defaults not applied: %+v", rt)
			}
			k := r.key()
			back, err := resource.ParseKey(k.String())
			if err != nil || back != k {
				t.Fatalf("key %q does not round-trip: %v %v", k, back, err)
			}
		}
	})
}

func FuzzDAB(f *testing.F) {
	addSeeds(f, ".dab")
	f.Add([]byte(`{"version":"0.1","services":{"a":{"image":"x","ports":[{"port":1}],"networks":["n"]}}}`))
	f.Add([]byte(`{"Version":"0.1","Services":{"a":{"Image":"x","Env":null,"Labels":{}}}} `))
	f.Add([]byte(`{"Version":"0.1","Services":{"a":{"Image":"x","Ports":[{"Port":1e3}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, problems := decodeDAB(data)
		if (b == nil) == (len(problems) == 0) {
			t.Fatalf("bundle %v with problems %v", b != nil, problems)
		}
		for _, p := range problems {
			if p.line < 1 || p.msg == "" {
				t.Fatalf("malformed problem %+v", p)
			}
		}
		if b == nil {
			return
		}
		if b.Version != "0.1" || len(b.Services) == 0 {
			t.Fatalf("accepted version %q with %d services", b.Version, len(b.Services))
		}
		for _, r := range convertDAB("s", "f.dab", b) {
			if r.Service == nil {
				continue
			}
			if r.Service.TaskTemplate.ContainerSpec.Image == "" {
				t.Fatalf("service %s without an image", r.Key)
			}
			for _, p := range r.Service.EndpointSpec.Ports {
				if p.TargetPort < 1 || p.TargetPort > 65535 || p.PublishedPort != 0 {
					t.Fatalf("bad port %+v", p)
				}
			}
		}
	})
}
