package manifests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	interp "github.com/compose-spec/compose-go/v2/interpolation"
	"github.com/compose-spec/compose-go/v2/override"
	"github.com/compose-spec/compose-go/v2/schema"
	"github.com/compose-spec/compose-go/v2/transform"
	"github.com/compose-spec/compose-go/v2/tree"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	yaml "go.yaml.in/yaml/v4"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// compose-go stops at the first file that fails and, within it, reports every
// interpolation error but only one schema violation (the most specific cause in the
// validator's error tree) and one canonical-form error (such as a malformed port), in
// that order. A user fixing a file would see one mistake per run. When compose-go
// refuses the files, diagnose goes over them again the way compose-go does up to its
// schema check — interpolate, merge, validate against the same embedded schema — and
// reports every violation, then puts every service attribute and top-level object that
// passed through compose-go's canonical transforms one at a time.
//
// It only ever adds problems to a load that has already failed, and it is best effort:
// anything it cannot follow (YAML tags compose-go resolves itself, a panic on odd input)
// leaves the report to compose-go's own error.

// composeSchema is compose-go's embedded schema, compiled the way compose-go compiles it.
var composeSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema.Schema))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("compose-spec.json", doc); err != nil {
		return nil, err
	}
	c.RegisterFormat(&jsonschema.Format{Name: "duration", Validate: func(v any) error {
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("expected string")
		}
		_, err := time.ParseDuration(s)
		return err
	}})
	return c.Compile("compose-spec.json")
})

// composeAttributes are the attribute paths the schema declares.
var composeAttributes = sync.OnceValue(func() *tree.Matcher {
	return tree.NewMatcher(schema.AttributePaths()...)
})

// composeSchemaViolations validates a model against the Compose Specification and
// returns one message per independent violation, worded as compose-go words its one.
func composeSchemaViolations(model map[string]any) ([]string, error) {
	sch, err := composeSchema()
	if err != nil {
		return nil, err
	}
	// As compose-go does: the validator wants plain JSON values.
	data, err := json.Marshal(model)
	if err != nil {
		return nil, err
	}
	var instance any
	if err := json.Unmarshal(data, &instance); err != nil {
		return nil, err
	}
	err = sch.Validate(instance)
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return nil, err
	}
	var leaves []*jsonschema.ValidationError
	composeCollectViolations(verr, instance, &leaves)
	var out []string
	seen := map[string]bool{}
	for _, e := range leaves {
		msg := composeSchemaMessage(e)
		if !seen[msg] {
			seen[msg] = true
			out = append(out, msg)
		}
	}
	return out, nil
}

// composeCollectViolations walks the validator's error tree. Where the schema offers
// alternatives (oneOf, anyOf) the violation is the most specific failure among them,
// picked as compose-go picks its single one; elsewhere every failing branch is a
// violation of its own.
//
// The schema closes objects with unevaluatedProperties, so when any attribute of an
// object fails, the validator also reports every other declared attribute of that
// object as not allowed. Those echoes are left out: an attribute the specification
// declares is never unknown.
func composeCollectViolations(e *jsonschema.ValidationError, instance any, out *[]*jsonschema.ValidationError) {
	if len(e.Causes) == 0 {
		if _, ok := e.ErrorKind.(*kind.FalseSchema); ok && composeAttributes().Matches(composeSchemaPath(instance, e.InstanceLocation)) {
			return
		}
		*out = append(*out, e)
		return
	}
	switch e.ErrorKind.(type) {
	case *kind.OneOf, *kind.AnyOf:
		if t := composeTypeAlternatives(e); t != nil {
			*out = append(*out, t)
		} else {
			*out = append(*out, composeMostSpecific(e))
		}
		return
	}
	for _, c := range e.Causes {
		composeCollectViolations(c, instance, out)
	}
}

// composeTypeAlternatives merges alternatives that only differ in type ("a string or a
// list") into one type error naming them all; compose-go names the first. It returns
// nil when some alternative failed on something else.
func composeTypeAlternatives(e *jsonschema.ValidationError) *jsonschema.ValidationError {
	var got string
	var want []string
	for _, c := range e.Causes {
		for len(c.Causes) == 1 {
			c = c.Causes[0]
		}
		t, ok := c.ErrorKind.(*kind.Type)
		if !ok || len(c.Causes) > 0 || !slices.Equal(c.InstanceLocation, e.InstanceLocation) {
			return nil
		}
		got = t.Got
		for _, w := range t.Want {
			if !slices.Contains(want, w) {
				want = append(want, w)
			}
		}
	}
	if len(want) == 0 {
		return nil
	}
	return &jsonschema.ValidationError{InstanceLocation: e.InstanceLocation, ErrorKind: &kind.Type{Got: got, Want: want}}
}

// composeSchemaPath turns an instance location into the pattern form of the schema's
// attribute paths: sequence items are [].
func composeSchemaPath(instance any, loc []string) tree.Path {
	p := tree.NewPath()
	cur := instance
	for _, part := range loc {
		switch v := cur.(type) {
		case []any:
			p = p.Next(tree.PathMatchList)
			if i, err := strconv.Atoi(part); err == nil && i >= 0 && i < len(v) {
				cur = v[i]
			} else {
				cur = nil
			}
		case map[string]any:
			p = p.Next(part)
			cur = v[part]
		default:
			p = p.Next(part)
			cur = nil
		}
	}
	return p
}

// composeMostSpecific is compose-go's choice among causes: the deepest, an unknown
// attribute counting one level deeper, the first on ties.
func composeMostSpecific(e *jsonschema.ValidationError) *jsonschema.ValidationError {
	if len(e.Causes) == 0 {
		return e
	}
	var best *jsonschema.ValidationError
	for _, c := range e.Causes {
		c = composeMostSpecific(c)
		if composeSpecificity(c) > composeSpecificity(best) {
			best = c
		}
	}
	return best
}

func composeSpecificity(e *jsonschema.ValidationError) int {
	if e == nil {
		return -1
	}
	if _, ok := e.ErrorKind.(*kind.AdditionalProperties); ok {
		return len(e.InstanceLocation) + 1
	}
	return len(e.InstanceLocation)
}

// composeSchemaMessage words a violation as compose-go's validation error does, so
// loadError reads it like compose-go's own.
func composeSchemaMessage(e *jsonschema.ValidationError) string {
	path := strings.Join(e.InstanceLocation, ".")
	switch k := e.ErrorKind.(type) {
	case *kind.Type:
		return fmt.Sprintf("%s must be a %s", path, composeTypeNames(k.Want))
	case *kind.Minimum:
		return fmt.Sprintf("%s must be greater than or equal to %s", path, k.Want.Num())
	case *kind.Maximum:
		return fmt.Sprintf("%s must be less than or equal to %s", path, k.Want.Num())
	}
	return fmt.Sprintf("%s %s", path, e.ErrorKind.LocalizedString(message.NewPrinter(language.English)))
}

func composeTypeNames(want []string) string {
	names := make([]string, len(want))
	for i, w := range want {
		names[i] = w
		if w == "object" {
			names[i] = "mapping"
		}
	}
	if len(names) == 1 {
		return names[0]
	}
	sort.Strings(names)
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// diagnose is run when compose-go refused the files; see the comment at the top. env
// is the interpolation environment compose-go used.
func (l *composeLoader) diagnose(env map[string]string) (probs Problems) {
	if l.scan.customTags {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			probs = nil
		}
	}()
	opts := interp.Options{
		LookupValue: func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok
		},
		TypeCastMapping: l.scan.castMapping(),
		Substitute:      l.substitute,
	}
	sub := &composeLoader{in: l.in, docs: l.docs, realRoot: l.realRoot}
	model := map[string]any{}
	reported := map[string]bool{}
	for _, d := range l.docs {
		dec := yaml.NewDecoder(bytes.NewReader(d.data))
		for {
			var raw any
			if err := dec.Decode(&raw); err != nil {
				if !errors.Is(err, io.EOF) {
					return sub.probs
				}
				break
			}
			cfg, ok := composeStringKeys(raw).(map[string]any)
			if !ok {
				return sub.probs
			}
			interpolated, _, errs := composeInterpolateEach(nil, cfg, opts)
			for _, err := range errs {
				sub.loadError(err)
			}
			cfg, _ = interpolated.(map[string]any)
			composeFixEmpty(cfg)
			var err error
			if model, err = override.Merge(model, cfg); err != nil {
				return sub.probs
			}
			if model, err = override.EnforceUnicity(model); err != nil {
				return sub.probs
			}
			violations, err := composeSchemaViolations(model)
			if err != nil {
				return sub.probs
			}
			for _, v := range violations {
				if !reported[v] {
					reported[v] = true
					sub.loadError(fmt.Errorf("validating %s: %s", d.abs, v))
				}
			}
			delete(model, "version")
		}
	}
	sub.diagnoseCanonical(model, reported)
	return sub.probs
}

// composeInterpolateEach interpolates v, found at path, with compose-go's
// interpolation. compose-go drops a whole top-level section when one value in it
// fails; here only the failing values are dropped, so the rest can still be validated.
// The value is handed to compose-go nested under its path, so the casts and the error
// messages are compose-go's own.
func composeInterpolateEach(path []string, v any, opts interp.Options) (value any, ok bool, errs []error) {
	wrapped := v
	for i := len(path) - 1; i >= 0; i-- {
		wrapped = map[string]any{path[i]: wrapped}
	}
	m, isMap := wrapped.(map[string]any)
	if !isMap {
		return v, true, nil
	}
	out, err := interp.Interpolate(m, opts)
	if err == nil {
		var res any = out
		for _, k := range path {
			res = res.(map[string]any)[k]
		}
		return res, true, nil
	}
	child := func(key string) []string {
		return append(slices.Clone(path), key)
	}
	switch t := v.(type) {
	case map[string]any:
		res := make(map[string]any, len(t))
		for _, k := range sortedComposeKeys(t) {
			r, ok, e := composeInterpolateEach(child(k), t[k], opts)
			if ok {
				res[k] = r
			}
			errs = append(errs, e...)
		}
		return res, true, errs
	case []any:
		res := make([]any, len(t))
		for i, item := range t {
			r, ok, e := composeInterpolateEach(child(tree.PathMatchList), item, opts)
			if ok {
				res[i] = r
			}
			errs = append(errs, e...)
		}
		return res, true, errs
	}
	return nil, false, []error{err}
}

// diagnoseCanonical puts each service attribute and each top-level network, volume,
// secret and config through compose-go's canonical transforms on its own, skipping
// what already violates the schema (compose-go never transforms an invalid model).
func (l *composeLoader) diagnoseCanonical(model map[string]any, violations map[string]bool) {
	violated := func(path ...string) bool {
		prefix := strings.Join(path, ".")
		for v := range violations {
			if v == prefix || strings.HasPrefix(v, prefix+".") || strings.HasPrefix(v, prefix+" ") {
				return true
			}
		}
		return false
	}
	report := func(err error, path ...string) {
		msg := l.cleanMessage(err.Error())
		if p := strings.Join(path, "."); !strings.HasPrefix(msg, p) {
			msg = p + ": " + msg
		}
		file, line := l.locate(true, path...)
		l.errorf(file, line, "%s", msg)
	}
	try := func(piece map[string]any, path ...string) {
		if !violated(path...) {
			if err := composeCanonical(piece); err != nil {
				report(err, path...)
			}
		}
	}
	if services, ok := model["services"].(map[string]any); ok {
		for _, name := range sortedComposeKeys(services) {
			svc, ok := services[name].(map[string]any)
			if !ok {
				continue
			}
			for _, key := range sortedComposeKeys(svc) {
				wrap := func(v any) map[string]any {
					return map[string]any{"services": map[string]any{name: map[string]any{key: composeClone(v)}}}
				}
				path := []string{"services", name, key}
				items, isList := svc[key].([]any)
				if !isList {
					try(wrap(svc[key]), path...)
					continue
				}
				// A list (ports, volumes) is transformed as a whole; put its valid items
				// through one by one, to name each that fails.
				found := false
				for i, item := range items {
					itemPath := append(slices.Clone(path), strconv.Itoa(i))
					if violated(itemPath...) {
						continue
					}
					if err := composeCanonical(wrap([]any{item})); err != nil {
						if s, isStr := item.(string); isStr {
							err = fmt.Errorf("%q: %w", s, err)
						}
						report(err, itemPath...)
						found = true
					}
				}
				if !found && !violated(path...) {
					try(wrap(svc[key]), path...)
				}
			}
		}
	}
	for _, section := range []string{"networks", "volumes", "secrets", "configs"} {
		objs, ok := model[section].(map[string]any)
		if !ok {
			continue
		}
		for _, name := range sortedComposeKeys(objs) {
			try(map[string]any{section: map[string]any{name: composeClone(objs[name])}}, section, name)
		}
	}
}

func composeCanonical(piece map[string]any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = nil // compose-go would not have got this far with it
		}
	}()
	_, err = transform.Canonical(piece, false)
	return err
}

// composeStringKeys gives a decoded YAML document the string keys compose-go's model
// has (compose-go refuses other keys before any of this runs).
func composeStringKeys(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = composeStringKeys(e)
		}
		return t
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[fmt.Sprint(k)] = composeStringKeys(e)
		}
		return out
	case []any:
		for i, e := range t {
			t[i] = composeStringKeys(e)
		}
		return t
	}
	return v
}

// composeFixEmpty does what compose-go does before merging: a null list is an empty
// one.
func composeFixEmpty(v any) any {
	switch t := v.(type) {
	case []any:
		if t == nil {
			return []any{}
		}
		for i, e := range t {
			t[i] = composeFixEmpty(e)
		}
	case map[string]any:
		for k, e := range t {
			t[k] = composeFixEmpty(e)
		}
	}
	return v
}

func composeClone(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = composeClone(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = composeClone(e)
		}
		return out
	}
	return v
}
