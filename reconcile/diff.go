package reconcile

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/capstan-dev/capstan/resource"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
)

// Masked replaces a value that must not be shown: secret data, and the values of
// environment variables and labels whose key looks secret.
const Masked = "(sensitive)"

// secretWords mark a key (environment variable, label, option) whose value is masked.
var secretWords = []string{"PASSWORD", "SECRET", "TOKEN", "KEY"}

// LooksSecret reports whether a variable or label named key probably holds a secret:
// its name contains PASSWORD, SECRET, TOKEN or KEY, in any case.
func LooksSecret(key string) bool {
	up := strings.ToUpper(key)
	for _, w := range secretWords {
		if strings.Contains(up, w) {
			return true
		}
	}
	return false
}

// DiffService compares two service specs after normalization (NormalizeService) and
// returns every differing field, sorted by path. desired decides two things the live
// side alone cannot: a digest pin on the live image is ignored unless desired pins one
// too, and Placement.Platforms (set by the client when it pins) is ignored unless
// desired sets platforms.
func DiffService(desired, live swarm.ServiceSpec) []FieldDiff {
	d, l := comparableServices(desired, live)
	if equalSpecs(reflect.ValueOf(d), reflect.ValueOf(l)) {
		// The common case of every no-op reconcile: skip flattening both specs.
		return nil
	}
	diffs := diffLeaves(flattenService(l), flattenService(d))
	if modeKind(d.Mode) != modeKind(l.Mode) {
		// The mode's own fields (replicas, job counts) mean nothing across kinds.
		kept := diffs[:0]
		for _, f := range diffs {
			if !strings.HasPrefix(f.Path, "Mode.") {
				kept = append(kept, f)
			}
		}
		diffs = kept
	}
	return diffs
}

// equalSpecs is reflect.DeepEqual with nil and empty slices and maps equal, as the
// field-level diff treats them; it lets an unchanged service skip flattening.
func equalSpecs(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return equalSpecs(a.Elem(), b.Elem())
	case reflect.Slice:
		if a.Len() != b.Len() {
			return false
		}
		for i := 0; i < a.Len(); i++ {
			if !equalSpecs(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.Len() != b.Len() {
			return false
		}
		iter := a.MapRange()
		for iter.Next() {
			v := b.MapIndex(iter.Key())
			if !v.IsValid() || !equalSpecs(iter.Value(), v) {
				return false
			}
		}
		return true
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			if !equalSpecs(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Func, reflect.Chan:
		return a.IsNil() && b.IsNil()
	default:
		return a.Equal(b)
	}
}

func comparableServices(desired, live swarm.ServiceSpec) (d, l swarm.ServiceSpec) {
	d, l = NormalizeService(desired), NormalizeService(live)
	if dc, lc := d.TaskTemplate.ContainerSpec, l.TaskTemplate.ContainerSpec; dc != nil && lc != nil && !hasDigest(dc.Image) {
		lc.Image = stripDigest(lc.Image)
	}
	if d.TaskTemplate.Placement == nil || len(d.TaskTemplate.Placement.Platforms) == 0 {
		if l.TaskTemplate.Placement != nil {
			l.TaskTemplate.Placement.Platforms = nil
		}
	}
	ignoreUnsupported(&d, &l)
	return d, l
}

// ignoreUnsupported drops from desired the fields added to the Engine API after 1.41
// (Engine 20.10) that the live spec lacks: an older engine silently discards them, so
// they would otherwise show as drift forever. The price: on a newer engine, removing one
// of them by hand goes unnoticed.
func ignoreUnsupported(d, l *swarm.ServiceSpec) {
	dc, lc := d.TaskTemplate.ContainerSpec, l.TaskTemplate.ContainerSpec
	if dc == nil || lc == nil {
		return
	}
	if dh, lh := dc.Healthcheck, lc.Healthcheck; dh != nil && lh != nil && lh.StartInterval == 0 {
		dh.StartInterval = 0 // API 1.44
	}
	if lc.OomScoreAdj == 0 {
		dc.OomScoreAdj = 0 // API 1.46
	}
	if dp, lp := dc.Privileges, lc.Privileges; dp != nil && (lp == nil || lp.Seccomp == nil && lp.AppArmor == nil && !lp.NoNewPrivileges) {
		dp.Seccomp, dp.AppArmor, dp.NoNewPrivileges = nil, nil, false // API 1.46
	}
	live := map[string]mount.Mount{}
	for _, m := range lc.Mounts {
		live[m.Target] = m
	}
	for i := range dc.Mounts {
		dm, lm := &dc.Mounts[i], live[dc.Mounts[i].Target]
		if dm.VolumeOptions != nil && (lm.VolumeOptions == nil || lm.VolumeOptions.Subpath == "") {
			dm.VolumeOptions.Subpath = "" // API 1.45
		}
		if dm.TmpfsOptions != nil && (lm.TmpfsOptions == nil || len(lm.TmpfsOptions.Options) == 0) {
			dm.TmpfsOptions.Options = nil // API 1.46
		}
		if lm.ImageOptions == nil {
			dm.ImageOptions = nil // API 1.48
		}
		if lm.ClusterOptions == nil {
			dm.ClusterOptions = nil // API 1.42
		}
	}
}

// DiffNetwork compares two networks' user-declared fields (NormalizeNetwork). Live
// options the allocator adds are ignored unless desired sets them; so are the live
// IPAM pools when desired declares none, and a pool's gateway, range and auxiliary
// addresses when desired leaves them to the allocator.
func DiffNetwork(desired, live network.CreateOptions) []FieldDiff {
	d, l := NormalizeNetwork(desired), NormalizeNetwork(live)
	for _, k := range allocatorNetworkOptions {
		if _, ok := d.Options[k]; !ok {
			delete(l.Options, k)
		}
	}
	if len(d.IPAM.Config) == 0 {
		l.IPAM.Config = nil
	} else {
		for i := range l.IPAM.Config {
			if i >= len(d.IPAM.Config) {
				break
			}
			dc, lc := d.IPAM.Config[i], &l.IPAM.Config[i]
			if dc.Gateway == "" {
				lc.Gateway = ""
			}
			if dc.IPRange == "" {
				lc.IPRange = ""
			}
			if len(dc.AuxAddress) == 0 {
				lc.AuxAddress = nil
			}
		}
	}
	return diffLeaves(flatten(l, nil), flatten(d, nil))
}

// DiffLabels compares object labels other than capstan's own: all that can differ on a
// secret or config without a new version (their data cannot change in place, and Swarm
// never returns a secret's data).
func DiffLabels(desired, live map[string]string) []FieldDiff {
	return diffLeaves(
		flatten(struct{ Labels map[string]string }{withoutCapstanLabels(live)}, nil),
		flatten(struct{ Labels map[string]string }{withoutCapstanLabels(desired)}, nil))
}

// DiffRoute compares two SLB routes field by field.
func DiffRoute(desired, live resource.Route) []FieldDiff {
	return diffLeaves(flatten(live, nil), flatten(desired, nil))
}

// DiffSLBListener compares two SLB listeners after normalizing both (SLB's defaults
// written out, settings that do not apply cleared, transitional statuses read as the
// status they lead to). Only the live side knows the group's ID; the group is compared
// by name.
func DiffSLBListener(desired, live resource.SLBListener) []FieldDiff {
	return diffLeaves(flatten(comparableListener(live), nil), flatten(comparableListener(desired), nil))
}

func comparableListener(l resource.SLBListener) resource.SLBListener {
	l = l.Normalized()
	l.VServerGroupID = ""
	return l
}

// DiffVServerGroup compares two VServer groups' members, whatever their order. The
// desired side's note of which service port the members stand for is not compared.
func DiffVServerGroup(desired, live resource.VServerGroup) []FieldDiff {
	return diffLeaves(flatten(comparableGroup(live), nil), flatten(comparableGroup(desired), nil))
}

func comparableGroup(g resource.VServerGroup) resource.VServerGroup {
	g = g.Normalized()
	g.Service, g.TargetPort, g.PortProtocol = "", 0, ""
	return g
}

// describe lists every field of r as written in the source, as FieldDiffs with only
// After set: the body of a Create in a rendered plan. Secret data is masked; capstan's
// own labels and the defaults Swarm would fill in are left out.
func describe(r *resource.Resource) []FieldDiff {
	var leaves map[string]leaf
	switch {
	case r.Service != nil:
		s := deepCopy(*r.Service)
		s.Labels = withoutCapstanLabels(s.Labels)
		leaves = flattenService(s)
	case r.Network != nil:
		n := deepCopy(*r.Network)
		n.Labels = withoutCapstanLabels(n.Labels)
		leaves = flatten(n, nil)
	case r.Secret != nil:
		s := *r.Secret
		s.Labels = withoutCapstanLabels(s.Labels)
		leaves = flatten(s, map[string]bool{"Data": true})
	case r.Config != nil:
		c := *r.Config
		c.Labels = withoutCapstanLabels(c.Labels)
		leaves = flatten(c, nil)
	case r.Route != nil:
		leaves = flatten(*r.Route, nil)
	case r.SLBListener != nil:
		leaves = flatten(comparableListener(*r.SLBListener), nil)
	case r.VServerGroup != nil:
		leaves = flatten(r.VServerGroup.Normalized(), nil)
	}
	diffs := make([]FieldDiff, 0, len(leaves))
	for p, l := range leaves {
		diffs = append(diffs, FieldDiff{Path: p, After: l.shown})
	}
	sort.Slice(diffs, func(i, j int) bool { return diffs[i].Path < diffs[j].Path })
	return diffs
}

// leaf is one scalar field of a flattened spec.
type leaf struct {
	raw   string // what is compared
	shown string // what is displayed: masked or summarized
	zero  string // how the absent value reads next to this one ("0", "false", "")
}

// keyFunc names one element of a list that is better shown as a map: env vars by name,
// ports by target/protocol, mounts by target. A non-nil value is the element's whole
// displayed value (env vars); otherwise the element's fields are flattened beneath it.
type keyFunc func(elem reflect.Value) (key string, value *string)

// keyedLists are the lists, by field path without keys, flattened as maps.
var keyedLists = map[string]keyFunc{
	"TaskTemplate.ContainerSpec.Env": func(v reflect.Value) (string, *string) {
		k, val, ok := strings.Cut(v.String(), "=")
		if !ok {
			val = "(unset)"
		}
		return k, &val
	},
	"TaskTemplate.Networks": func(v reflect.Value) (string, *string) {
		return v.Interface().(swarm.NetworkAttachmentConfig).Target, nil
	},
	"EndpointSpec.Ports": func(v reflect.Value) (string, *string) {
		p := v.Interface().(swarm.PortConfig)
		return fmt.Sprintf("%d/%s", p.TargetPort, p.Protocol), nil
	},
	"TaskTemplate.ContainerSpec.Mounts": func(v reflect.Value) (string, *string) {
		return v.Interface().(mount.Mount).Target, nil
	},
	"TaskTemplate.ContainerSpec.Secrets": func(v reflect.Value) (string, *string) {
		r, _ := v.Interface().(*swarm.SecretReference)
		if r == nil {
			return "", nil
		}
		if r.File != nil {
			return r.File.Name, nil
		}
		return r.SecretName, nil
	},
	"TaskTemplate.ContainerSpec.Configs": func(v reflect.Value) (string, *string) {
		r, _ := v.Interface().(*swarm.ConfigReference)
		if r == nil {
			return "", nil
		}
		if r.File != nil {
			return r.File.Name, nil
		}
		return r.ConfigName, nil
	},
	// SLB VServer group members, by ECS instance (resource.VServerGroup), one line each.
	"Backends": func(v reflect.Value) (string, *string) {
		b, _ := v.Interface().(resource.SLBBackend)
		port := strconv.Itoa(b.Port)
		if b.Port == 0 {
			port = "(known after apply)"
		}
		val := "port " + port + ", weight " + strconv.Itoa(b.Weight)
		if b.Type != "" && b.Type != "ecs" {
			val += ", type " + b.Type
		}
		return b.ServerID, &val
	},
	"TaskTemplate.ContainerSpec.Ulimits": func(v reflect.Value) (string, *string) {
		u, _ := v.Interface().(*container.Ulimit)
		if u == nil {
			return "", nil
		}
		return u.Name, nil
	},
}

// flattenService flattens a normalized service spec, leaving out what never counts as
// a difference.
func flattenService(s swarm.ServiceSpec) map[string]leaf {
	leaves := flatten(s, nil)
	delete(leaves, "TaskTemplate.ForceUpdate")
	// Global and job modes are empty structs, which flatten to nothing: name the mode.
	leaves["Mode"] = leaf{raw: modeKind(s.Mode), shown: modeKind(s.Mode)}
	return leaves
}

// flatten turns v into leaves keyed by field path ("TaskTemplate.ContainerSpec.Env[A]").
// Empty strings, false, zero numbers, nil pointers and empty maps and lists produce no
// leaf, which is how nil and empty compare equal. sensitive names field paths (without
// keys) whose values are always masked.
func flatten(v any, sensitive map[string]bool) map[string]leaf {
	f := flattener{out: map[string]leaf{}, sensitive: sensitive}
	f.walk("", "", reflect.ValueOf(v), false)
	return f.out
}

type flattener struct {
	out       map[string]leaf
	sensitive map[string]bool
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	fileModeType = reflect.TypeOf(os.FileMode(0))
)

func (f *flattener) walk(path, schema string, v reflect.Value, masked bool) {
	if !v.IsValid() {
		return
	}
	masked = masked || f.sensitive[schema]
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			f.walk(path, schema, v.Elem(), masked)
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			if !sf.IsExported() || sf.Tag.Get("json") == "-" {
				continue
			}
			if sf.Anonymous {
				f.walk(path, schema, v.Field(i), masked)
				continue
			}
			f.walk(join(path, sf.Name), join(schema, sf.Name), v.Field(i), masked)
		}
	case reflect.Map:
		keys := make([]string, 0, v.Len())
		vals := map[string]reflect.Value{}
		iter := v.MapRange()
		for iter.Next() {
			k := fmt.Sprint(iter.Key().Interface())
			keys = append(keys, k)
			vals[k] = iter.Value()
		}
		sort.Strings(keys)
		for _, k := range keys {
			f.walk(path+"["+k+"]", schema, vals[k], masked || LooksSecret(k))
		}
	case reflect.Slice, reflect.Array:
		if v.Len() == 0 {
			return
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			f.bytes(path, v.Bytes(), masked)
			return
		}
		if key := keyedLists[schema]; key != nil {
			seen := map[string]int{}
			for i := 0; i < v.Len(); i++ {
				k, val := key(v.Index(i))
				if seen[k]++; seen[k] > 1 {
					k += "#" + strconv.Itoa(seen[k])
				}
				p := path + "[" + k + "]"
				if val != nil {
					f.add(p, *val, masked || LooksSecret(k), "")
					continue
				}
				f.walk(p, schema, v.Index(i), masked)
			}
			return
		}
		b, err := json.Marshal(v.Interface())
		if err != nil {
			b = []byte(fmt.Sprint(v.Interface()))
		}
		f.add(path, string(b), masked, "")
	case reflect.String:
		if v.String() != "" {
			f.add(path, v.String(), masked, "")
		}
	case reflect.Bool:
		if v.Bool() {
			f.add(path, "true", masked, "false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if v.Int() == 0 {
			return
		}
		s := strconv.FormatInt(v.Int(), 10)
		if v.Type() == durationType {
			s = time.Duration(v.Int()).String()
		}
		f.add(path, s, masked, "0")
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if v.Uint() == 0 {
			return
		}
		s := strconv.FormatUint(v.Uint(), 10)
		if v.Type() == fileModeType {
			s = fmt.Sprintf("%#o", v.Uint())
		}
		f.add(path, s, masked, "0")
	case reflect.Float32, reflect.Float64:
		if v.Float() != 0 {
			f.add(path, strconv.FormatFloat(v.Float(), 'g', -1, 64), masked, "0")
		}
	}
}

func (f *flattener) add(path, value string, masked bool, zero string) {
	l := leaf{raw: value, shown: value, zero: zero}
	if masked {
		l.shown = Masked
		l.zero = ""
	}
	f.out[path] = l
}

// bytes summarizes data (config or secret content) rather than printing it.
func (f *flattener) bytes(path string, b []byte, masked bool) {
	sum := sha256.Sum256(b)
	l := leaf{raw: string(b), shown: fmt.Sprintf("(%d bytes, sha256:%s)", len(b), hex.EncodeToString(sum[:])[:12])}
	if masked {
		l.shown = Masked
	}
	f.out[path] = l
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// diffLeaves returns the differences from before to after, sorted by path.
func diffLeaves(before, after map[string]leaf) []FieldDiff {
	paths := make([]string, 0, len(before)+len(after))
	for p := range before {
		paths = append(paths, p)
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	var out []FieldDiff
	for _, p := range paths {
		b, hasB := before[p]
		a, hasA := after[p]
		if hasB && hasA && b.raw == a.raw {
			continue
		}
		d := FieldDiff{Path: p}
		switch {
		case hasB && hasA:
			d.Before, d.After = b.shown, a.shown
		case hasB:
			d.Before, d.After = b.shown, b.zero
		default:
			d.Before, d.After = a.zero, a.shown
		}
		out = append(out, d)
	}
	return out
}
