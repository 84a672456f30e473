package manifests

import (
	"context"
	"path/filepath"
	"sort"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/paths"
	"github.com/compose-spec/compose-go/v2/tree"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/google/go-cmp/cmp"
)

// composeNarrowCases are files that exercise what compose_fast.go narrows: string
// values at every kind of cast path (direct, through anchors and merge keys, under
// lists and wildcards) and every kind of path compose-go resolves.
var composeNarrowCases = map[string]map[string]string{
	"casts and paths": {"compose.yml": `
x-common: &common
  deploy:
    replicas: "${N}"
    update_config: {parallelism: "2", max_failure_ratio: "0.5"}
x-retries: &retries "${N}"
services:
  web:
    <<: *common
    image: nginx
    build:
      context: ./app
      additional_contexts:
        base: ./base
      ssh: ["default=./id"]
    env_file:
      - path: ./web.env
        required: false
    label_file: ./labels.txt
    volumes:
      - ./data:/data
      - type: bind
        source: ./conf
        target: /conf
        read_only: "${RO}"
      - named:/named
    develop:
      watch:
        - path: ./src
          action: sync
          target: /src
    privileged: "${RO}"
    ulimits:
      nofile: {soft: "${N}", hard: "20000"}
      nproc: "65535"
    healthcheck: {retries: *retries, disable: "false", test: ["CMD", "true"]}
    ports:
      - target: "${PORT}"
        published: "8080"
      - "9000:90"
    cpus: "0.5"
    init: "true"
    stop_grace_period: 10s
    pre_start:
      - image: busybox
        volumes: ["./init:/init"]
        env_file: ./init.env
        privileged: "true"
  worker:
    image: worker
    scale: "2"
    depends_on:
      web: {condition: service_started, required: "true"}
networks:
  n: {external: "${RO}"}
  m: {attachable: "true", driver: overlay}
volumes:
  named:
    driver: local
    driver_opts: {type: none, o: bind, device: ./named}
secrets:
  s: {file: ./s.txt}
configs:
  c: {file: ./c.txt}
`},
	"no strings at cast paths": {"compose.yml": composeServices(5)},
	"extends another file": {
		"compose.yml": "services:\n  web:\n    extends: {file: base.yml, service: base}\n    image: web\n",
		"base.yml":    "services:\n  base:\n    image: base\n    deploy:\n      replicas: \"${N}\"\n    volumes: [./b:/b]\n",
	},
	"two files": {
		"compose.yml":  "services:\n  web:\n    image: web\n    volumes: [./a:/a]\n",
		"override.yml": "services:\n  web:\n    deploy: {replicas: \"${N}\"}\n    env_file: o.env\n",
	},
}

// TestComposeNarrowedPhasesMatchComposeGo loads the same files with compose-go's
// defaults (every cast pattern, its own relative path resolution and normalization) and
// the way loadProject does (see compose_fast.go), and requires the same model.
func TestComposeNarrowedPhasesMatchComposeGo(t *testing.T) {
	type tcase struct {
		root  string
		files []string
		env   map[string]string
	}
	cases := map[string]tcase{}
	for name, files := range composeNarrowCases {
		root := composeTree(t, files)
		order := []string{filepath.Join(root, "compose.yml")}
		var rest []string
		for f := range files {
			if f != "compose.yml" && f != "base.yml" {
				rest = append(rest, filepath.Join(root, f))
			}
		}
		sort.Strings(rest)
		cases[name] = tcase{root, append(order, rest...), map[string]string{"N": "3", "RO": "true", "PORT": "80", "TAG": "1"}}
	}
	confRoot, conf := conformanceCases(t, "testdata/conformance")
	for name, files := range conf {
		cases["conformance/"+name] = tcase{confRoot, files, conformanceEnv}
	}
	narrowed := 0
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			l := &composeLoader{in: composeInput{Stack: "narrow", Root: c.root, Files: c.files, Env: c.env}, unset: map[string]bool{}}
			l.realRoot = c.root
			if !l.readFiles() || !l.parseFiles() {
				t.Fatalf("cannot read: %v", l.probs)
			}
			scan := scanComposeKeys(l.docs)
			casts := scan.castMapping()
			if len(casts) < len(composeCastRules()) {
				narrowed++
			}
			load := func(narrow bool) map[string]any {
				env := map[string]string{}
				for k, v := range c.env {
					env[k] = v
				}
				details := types.ConfigDetails{WorkingDir: filepath.Dir(c.files[0]), Environment: env}
				for _, d := range l.docs {
					details.ConfigFiles = append(details.ConfigFiles, types.ConfigFile{Filename: d.abs, Content: d.data})
				}
				guard := composeContainedLoader{root: c.root, workingDir: details.WorkingDir}
				dict, err := loader.LoadModelWithContext(context.Background(), details, func(o *loader.Options) {
					o.SetProjectName("narrow", true)
					o.SkipInclude = true
					o.SkipDefaultValues = true
					o.ResourceLoaders = []loader.ResourceLoader{guard}
					if narrow {
						o.Interpolate.TypeCastMapping = casts
						o.ResolvePaths = false
						o.SkipNormalization = true
					}
				})
				if err != nil {
					t.Fatal(err)
				}
				if narrow {
					if err := resolveComposePaths(dict, details.WorkingDir, []paths.RemoteResource{guard.Accept}); err != nil {
						t.Fatal(err)
					}
					dict["name"] = "narrow"
					if dict, err = loader.Normalize(dict, env); err != nil {
						t.Fatal(err)
					}
				}
				return dict
			}
			want, got := load(false), load(true)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("model differs from compose-go's own (-compose-go +capstan):\n%s", diff)
			}
		})
	}
	// The comparison proves nothing if no case left a pattern out.
	if narrowed < len(cases)/2 {
		t.Errorf("only %d of %d cases narrowed the cast table", narrowed, len(cases))
	}
}

// TestComposeCastMappingKeepsWhatApplies checks the narrowing on its own: a pattern
// stays when its keys occur with a string value, and the whole table is kept when
// another file is extended.
func TestComposeCastMappingKeepsWhatApplies(t *testing.T) {
	tests := []struct {
		name     string
		compose  string
		want     []string // patterns that must be in the table
		dropped  []string // patterns that must not be
		complete bool
	}{
		{
			name:    "integer literal needs no cast",
			compose: "services:\n  web:\n    image: x\n    deploy: {replicas: 2}\n",
			dropped: []string{"services.*.deploy.replicas", "services.*.privileged"},
		},
		{
			name:    "string at a cast path",
			compose: "services:\n  web:\n    image: x\n    deploy: {replicas: \"${N}\"}\n",
			want:    []string{"services.*.deploy.replicas"},
			dropped: []string{"services.*.privileged"},
		},
		{
			name:    "string through an alias",
			compose: "x-n: &n \"3\"\nservices:\n  web:\n    image: x\n    deploy: {replicas: *n}\n",
			want:    []string{"services.*.deploy.replicas"},
		},
		{
			name:    "wildcard pattern",
			compose: "services:\n  web:\n    image: x\n    ulimits: {nproc: 10}\n",
			want:    []string{"services.*.ulimits.*"},
		},
		{
			name:     "extends another file",
			compose:  "services:\n  web:\n    extends: {file: b.yml, service: b}\n",
			complete: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &composeDoc{rel: "c.yml", data: []byte(tt.compose)}
			if probs := d.parse(); len(probs) > 0 {
				t.Fatal(probs)
			}
			casts := scanComposeKeys([]*composeDoc{d}).castMapping()
			for _, p := range tt.want {
				if _, ok := casts[tree.Path(p)]; !ok {
					t.Errorf("%s missing from %v", p, casts)
				}
			}
			for _, p := range tt.dropped {
				if _, ok := casts[tree.Path(p)]; ok {
					t.Errorf("%s kept", p)
				}
			}
			if tt.complete && len(casts) != len(composeCastRules()) {
				t.Errorf("%d patterns, want all %d", len(casts), len(composeCastRules()))
			}
		})
	}
}
