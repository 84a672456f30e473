package reconcile

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/capstan-dev/capstan/resource"
	"github.com/docker/docker/api/types/swarm"
)

// maxObjectName is Swarm's limit on secret and config names (swarmkit controlapi).
const maxObjectName = 64

// LabelVersionOf marks a secret or config version <name>_<hash8> with the name it is a
// version of, so versions of two long names that shorten alike are never confused.
const LabelVersionOf = "dev.capstan.version-of"

// BuildPlan pairs desired with live by Key and decides, for each pair, what apply must
// do. It performs no I/O and never modifies its inputs.
//
// Per pair, three states are compared: desired (the source), last applied (the live
// object's dev.capstan.spec-hash label) and live (normalized, see NormalizeService):
//
//   - desired, not live: Create (NotInCluster). Desired objects marked External must
//     exist live (else *MissingExternalError) and are never changed.
//   - live, not desired: Delete (NotInSource) if this instance owns it and its stack
//     prunes (stacks no longer in the source prune); objects of other owners, or of
//     none, are never touched.
//   - both, live not owned by this instance: *ConflictError listing every such key,
//     unless opts.Adopt (then Update, SourceChanged).
//   - desired hash ≠ last applied: Update (SourceChanged), or Scale (ReplicasChanged)
//     when only the replica count differs.
//   - hashes equal, live ≠ desired: the key goes to Plan.Drift; Update (Drift) when the
//     stack self-heals, else a NoOp change that only reports it.
//   - what Swarm cannot change in place is a Replace (ImmutableField): a service's mode,
//     any network change.
//
// Secrets and configs cannot change content in Swarm: a new content is created as
// <name>_<hash8> (Rotated), the services that use it are pointed at the new name, and
// the superseded version is deleted after them. The plan stays stable afterwards: the
// live version whose spec-hash matches the source is the one services use.
//
// The changes are ordered for apply: networks, secrets, configs, services (stacks after
// the stacks they depend on), VServer groups, listeners, then deletes in reverse. A plan
// deleting more than half the owned services is returned together with a
// *MassDeleteError unless opts.AllowMassDelete: it may be shown, never applied. Other
// errors return a zero Plan.
func BuildPlan(desired, live *resource.Set, opts Options) (Plan, error) {
	if desired == nil {
		desired = resource.NewSet()
	}
	if live == nil {
		live = resource.NewSet()
	}
	b := &builder{
		desired:   desired,
		live:      live,
		opts:      opts,
		instance:  opts.Instance,
		handled:   map[resource.Key]bool{},
		versions:  map[resource.Key]string{},
		logical:   map[resource.Key]string{},
		changes:   map[resource.Key]int{},
		plan:      Plan{Revision: opts.Revision},
		stackRank: map[string]int{},
	}
	if b.instance == "" {
		b.instance = resource.DefaultInstance
	}
	order, deps, err := orderStacks(desired.Stacks)
	if err != nil {
		return Plan{}, err
	}
	b.plan.StackOrder, b.plan.StackDeps = order, deps
	for i, s := range order {
		b.stackRank[s] = i
	}

	b.planVersions(resource.KindSecret)
	b.planVersions(resource.KindConfig)
	for _, k := range unionKeys(desired, live) {
		if b.handled[k] {
			continue
		}
		b.pair(k)
	}
	b.deleteSuperseded()
	b.detachFromReplacedNetworks()
	b.keepInUse()

	var errs []error
	sort.Slice(b.conflicts, func(i, j int) bool { return b.conflicts[i].Key.Less(b.conflicts[j].Key) })
	sort.Slice(b.missing, func(i, j int) bool { return b.missing[i].Key.Less(b.missing[j].Key) })
	if len(b.conflicts) > 0 {
		errs = append(errs, &ConflictError{Instance: b.instance, Conflicts: b.conflicts})
	}
	if len(b.missing) > 0 {
		errs = append(errs, &MissingExternalError{Missing: b.missing})
	}
	if len(errs) > 0 {
		return Plan{}, errors.Join(errs...)
	}
	sortChanges(b.plan.Changes, b.stackRank)
	sort.Slice(b.plan.Drift, func(i, j int) bool { return b.plan.Drift[i].Less(b.plan.Drift[j]) })
	if err := b.massDeleteGuard(); err != nil {
		return b.plan, err
	}
	return b.plan, nil
}

type builder struct {
	desired, live *resource.Set
	opts          Options
	instance      string
	plan          Plan
	conflicts     []Conflict
	missing       []MissingExternal

	// handled marks keys already decided, so the pairing loop skips them.
	handled map[resource.Key]bool
	// versions maps a desired secret/config key to the name of the version services
	// must use; logical maps the key of such a version back to the desired name.
	versions map[resource.Key]string
	logical  map[resource.Key]string
	// superseded lists live secret/config versions to delete once services moved.
	superseded []resource.Key
	// changes indexes plan.Changes by key.
	changes   map[resource.Key]int
	stackRank map[string]int
}

func (b *builder) add(c Change) {
	c.QueryRegistry = b.queryRegistry(c)
	if i, ok := b.changes[c.Key]; ok {
		b.plan.Changes[i] = c
		return
	}
	b.changes[c.Key] = len(b.plan.Changes)
	b.plan.Changes = append(b.plan.Changes, c)
}

func (b *builder) change(k resource.Key) (Change, bool) {
	i, ok := b.changes[k]
	if !ok {
		return Change{}, false
	}
	return b.plan.Changes[i], true
}

func (b *builder) warn(format string, args ...any) {
	b.plan.Warnings = append(b.plan.Warnings, fmt.Sprintf(format, args...))
}

func (b *builder) owned(r resource.Resource) bool { return r.Owner() == b.instance }

// claim checks that capstan may change live object l on behalf of desired d: it owns
// it, or opts.Adopt takes it over. Otherwise the conflict is recorded.
func (b *builder) claim(d, l resource.Resource) bool {
	if b.owned(l) || b.opts.Adopt {
		return true
	}
	b.conflicts = append(b.conflicts, Conflict{Key: d.Key, Owner: l.Owner(), Source: d.Source})
	return false
}

func (b *builder) stack(name string) (resource.Stack, bool) {
	s, ok := b.desired.Stacks[name]
	return s, ok
}

// selfHeal reports whether drift in stack is reverted; objects outside any declared
// stack self-heal, the default.
func (b *builder) selfHeal(stack string) bool {
	if s, ok := b.stack(stack); ok {
		return s.SelfHeal
	}
	return true
}

// prune reports whether owned objects of stack that left the source are deleted; a
// stack no longer in the source prunes.
func (b *builder) prune(stack string) bool {
	if s, ok := b.stack(stack); ok {
		return s.Prune
	}
	return true
}

func unionKeys(a, b *resource.Set) []resource.Key {
	seen := map[resource.Key]bool{}
	var keys []resource.Key
	for _, s := range []*resource.Set{a, b} {
		for k := range s.Resources {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Less(keys[j]) })
	return keys
}

// pair decides the change for one key outside secret/config versioning.
func (b *builder) pair(k resource.Key) {
	d, hasD := b.desired.Get(k)
	l, hasL := b.live.Get(k)
	switch {
	case hasD && d.External:
		if !hasL && !predefinedNetwork(k) {
			b.missing = append(b.missing, MissingExternal{Key: k, Source: d.Source})
		}
	case hasD && !hasL:
		after := b.desiredCopy(d)
		b.add(Change{Action: Create, Key: k, After: after, Reason: NotInCluster, Diff: describe(after)})
	case !hasD && hasL:
		b.orphan(l)
	default:
		if !b.claim(d, l) {
			return
		}
		switch {
		case d.Service != nil && l.Service != nil:
			b.pairService(d, l)
		case d.Network != nil && l.Network != nil:
			b.pairNetwork(d, l)
		default:
			b.pairOther(d, l)
		}
	}
}

// predefinedNetwork reports whether k names a network every node has without it being
// created (host, none, ...). docker stack deploy lets a stack declare them external
// without checking; they are local-scoped, so the swarm sink does not list them.
func predefinedNetwork(k resource.Key) bool {
	if k.Sink != resource.SinkSwarm || k.Kind != resource.KindNetwork {
		return false
	}
	switch k.Name {
	case "default", "bridge", "host", "none":
		return true
	}
	return strings.HasPrefix(k.Name, "container:")
}

// orphan handles a live object the source no longer declares.
func (b *builder) orphan(l resource.Resource) {
	if !b.owned(l) {
		return
	}
	if !b.prune(l.Stack) {
		b.warn("%s is no longer in the source; kept because stack %q has prune: false", l.Key, l.Stack)
		return
	}
	b.add(Change{Action: Delete, Key: l.Key, Before: copyResource(l), Reason: NotInSource})
}

// desiredCopy copies d for use as a change's After, pointing its secret and config
// references at the versions the plan uses.
func (b *builder) desiredCopy(d resource.Resource) *resource.Resource {
	c := copyResource(d)
	if c.Service == nil || c.Service.TaskTemplate.ContainerSpec == nil {
		return c
	}
	cs := c.Service.TaskTemplate.ContainerSpec
	for _, r := range cs.Secrets {
		if r == nil {
			continue
		}
		if v, ok := b.versions[resource.SecretKey(r.SecretName)]; ok && v != r.SecretName {
			r.SecretName, r.SecretID = v, ""
		}
	}
	for _, r := range cs.Configs {
		if r == nil {
			continue
		}
		if v, ok := b.versions[resource.ConfigKey(r.ConfigName)]; ok && v != r.ConfigName {
			r.ConfigName, r.ConfigID = v, ""
		}
	}
	return c
}

func specHash(r resource.Resource) string {
	if h := r.Labels()[resource.LabelSpecHash]; h != "" {
		return h
	}
	return resource.SpecHash(r)
}

func liveHash(r resource.Resource) string { return r.Labels()[resource.LabelSpecHash] }

// labelDiff explains a change whose normalized specs are equal: only capstan's own
// label (the spec hash, or the owner on adoption) changes.
func labelDiff(d, l resource.Resource) []FieldDiff {
	for _, name := range []string{resource.LabelManagedBy, resource.LabelSpecHash} {
		if before, after := l.Labels()[name], d.Labels()[name]; before != after {
			return []FieldDiff{{Path: "Labels[" + name + "]", Before: before, After: after}}
		}
	}
	return nil
}

func (b *builder) pairService(d, l resource.Resource) {
	after := b.desiredCopy(d)
	diffs := DiffService(*after.Service, *l.Service)
	adopting := !b.owned(l)
	if !adopting && len(diffs) == 0 && specHash(d) == liveHash(l) {
		return // nothing to do: the common case, without copying the live spec
	}
	carryOver(after, l, b.resolveImage(d.Stack))
	replace := modeKind(after.Service.Mode) != modeKind(l.Service.Mode)
	c := Change{Key: d.Key, Before: copyResource(l), After: after, Diff: diffs}

	switch {
	case adopting || specHash(d) != liveHash(l):
		switch {
		case replace:
			c.Action, c.Reason = Replace, ImmutableField
		case !adopting && onlyReplicas(diffs):
			c.Action, c.Reason = Scale, ReplicasChanged
		default:
			c.Action, c.Reason = Update, SourceChanged
		}
		if len(c.Diff) == 0 {
			c.Diff = labelDiff(d, l)
		}
	case len(diffs) == 0:
		return
	case b.rotationOnly(diffs):
		c.Action, c.Reason = Update, Rotated
	default:
		b.drift(&c, d.Stack)
		switch {
		case c.Action == NoOp:
		case replace:
			c.Action, c.Reason = Replace, ImmutableField
		case onlyReplicas(diffs):
			c.Action = Scale
		}
	}
	b.add(c)
}

// drift records c's key as drifted and makes c an Update that reverts it, or, when the
// stack does not self-heal, a NoOp that only reports it.
func (b *builder) drift(c *Change, stack string) {
	b.plan.Drift = append(b.plan.Drift, c.Key)
	c.Reason = Drift
	c.Action = Update
	if !b.selfHeal(stack) {
		c.Action = NoOp
	}
}

func onlyReplicas(diffs []FieldDiff) bool {
	return len(diffs) == 1 && diffs[0].Path == "Mode.Replicated.Replicas"
}

// rotationOnly reports whether every difference is a secret or config reference moving
// to another version of the same object: the rotation the plan itself started.
func (b *builder) rotationOnly(diffs []FieldDiff) bool {
	for _, d := range diffs {
		var key resource.Key
		switch {
		case strings.HasPrefix(d.Path, "TaskTemplate.ContainerSpec.Secrets[") && strings.HasSuffix(d.Path, "].SecretName"):
			key = resource.SecretKey(d.After)
		case strings.HasPrefix(d.Path, "TaskTemplate.ContainerSpec.Configs[") && strings.HasSuffix(d.Path, "].ConfigName"):
			key = resource.ConfigKey(d.After)
		default:
			return false
		}
		name, ok := b.logical[key]
		if !ok || !isVersion(d.Before, name) {
			return false
		}
	}
	return true
}

func (b *builder) resolveImage(stack string) string {
	if s, ok := b.stack(stack); ok && s.ResolveImage != "" {
		return s.ResolveImage
	}
	return resource.ResolveChanged
}

// queryRegistry decides Change.QueryRegistry: as docker stack deploy's --resolve-image,
// "changed" resolves a service's image when it is created or its image changes (an
// update that keeps the image keeps the live digest, see carryOver, and makes no
// registry call), "always" on every write, "never" not at all. A Scale writes the live
// spec and never resolves.
func (b *builder) queryRegistry(c Change) bool {
	if c.Key.Kind != resource.KindService || c.After == nil || c.After.Service == nil {
		return false
	}
	switch c.Action {
	case Create, Update, Replace:
	default:
		return false
	}
	switch b.resolveImage(c.After.Stack) {
	case resource.ResolveAlways:
		return true
	case resource.ResolveNever:
		return false
	}
	if c.Action == Create || c.Before == nil || c.Before.Service == nil {
		return true
	}
	want, have := c.After.Service.TaskTemplate.ContainerSpec, c.Before.Service.TaskTemplate.ContainerSpec
	if want == nil || have == nil {
		return want != nil
	}
	return stripDigest(NormalizeImage(want.Image)) != stripDigest(NormalizeImage(have.Image))
}

// carryOver keeps in after what Swarm or the client set on the live service and the
// source does not decide, so updating never changes it: the ForceUpdate counter (as
// docker stack deploy does), and, unless images are resolved on every update, the
// digest the image was pinned to with the platforms the registry reported, as long as
// the image itself is unchanged.
func carryOver(after *resource.Resource, live resource.Resource, resolve string) {
	a, l := &after.Service.TaskTemplate, live.Service.TaskTemplate
	a.ForceUpdate = l.ForceUpdate
	if resolve == resource.ResolveAlways || a.ContainerSpec == nil || l.ContainerSpec == nil {
		return
	}
	want, have := NormalizeImage(a.ContainerSpec.Image), NormalizeImage(l.ContainerSpec.Image)
	if hasDigest(want) || !hasDigest(have) || stripDigest(have) != want {
		return
	}
	a.ContainerSpec.Image = l.ContainerSpec.Image
	if l.Placement != nil && len(l.Placement.Platforms) > 0 && (a.Placement == nil || len(a.Placement.Platforms) == 0) {
		if a.Placement == nil {
			a.Placement = &swarm.Placement{}
		}
		a.Placement.Platforms = append([]swarm.Platform(nil), l.Placement.Platforms...)
	}
}

func (b *builder) pairNetwork(d, l resource.Resource) {
	diffs := DiffNetwork(*d.Network, *l.Network)
	c := Change{Key: d.Key, Before: copyResource(l), After: b.desiredCopy(d), Diff: diffs, Action: Replace, Reason: ImmutableField}
	switch {
	case !b.owned(l):
		// Networks cannot be relabelled: owning one means recreating it.
		b.warn("adopting %s recreates it (Swarm cannot change a network's labels); its services are detached and re-attached", d.Key)
		if len(c.Diff) == 0 {
			c.Diff = labelDiff(d, l)
		}
	case len(diffs) == 0:
		// Equal declarations: nothing to do even if the hash differs, since a network
		// cannot take a new label without being recreated.
		return
	case specHash(d) != liveHash(l):
	default:
		b.drift(&c, d.Stack)
		if c.Action == Update {
			c.Action, c.Reason = Replace, ImmutableField
		}
	}
	b.add(c)
}

// pairOther compares objects of other sinks (SLB) field by field: they carry no spec
// hash, so any difference is treated as a source change.
func (b *builder) pairOther(d, l resource.Resource) {
	var diffs []FieldDiff
	switch {
	case d.Route != nil && l.Route != nil:
		diffs = DiffRoute(*d.Route, *l.Route)
	case d.SLBListener != nil && l.SLBListener != nil:
		diffs = DiffSLBListener(*d.SLBListener, *l.SLBListener)
	case d.VServerGroup != nil && l.VServerGroup != nil:
		diffs = DiffVServerGroup(*d.VServerGroup, *l.VServerGroup)
	case resource.SpecHash(d) != resource.SpecHash(l):
		diffs = []FieldDiff{{Path: "Spec", Before: "(differs)", After: "(as declared)"}}
	}
	if len(diffs) == 0 && b.owned(l) {
		return
	}
	b.add(Change{Action: Update, Key: d.Key, Before: copyResource(l), After: b.desiredCopy(d), Reason: SourceChanged, Diff: diffs})
}

// versionName names the version of secret/config name whose spec hash is hash:
// <name>_<first 8 hex of hash>, the name shortened to keep Swarm's 64-character limit.
func versionName(name, hash string) string {
	h := hash
	if len(h) > 8 {
		h = h[:8]
	}
	return versionBase(name) + "_" + h
}

func versionBase(name string) string {
	if max := maxObjectName - 9; len(name) > max {
		return name[:max]
	}
	return name
}

// isVersion reports whether name is logical itself or one of its <logical>_<hash8>
// versions.
func isVersion(name, logical string) bool {
	if name == logical {
		return true
	}
	rest, ok := strings.CutPrefix(name, versionBase(logical)+"_")
	if !ok || len(rest) != 8 {
		return false
	}
	for _, r := range rest {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}

func kindKey(kind, name string) resource.Key {
	return resource.Key{Sink: resource.SinkSwarm, Kind: kind, Name: name}
}

// planVersions decides, for every desired secret (or config), which live version the
// services use, creating a new version when the content changed.
func (b *builder) planVersions(kind string) {
	for _, k := range b.desired.Keys() {
		if k.Sink != resource.SinkSwarm || k.Kind != kind {
			continue
		}
		d, _ := b.desired.Get(k)
		if d.External {
			continue // pair checks it exists; it is never versioned
		}
		b.handled[k] = true
		b.planVersion(d)
	}
}

func (b *builder) planVersion(d resource.Resource) {
	name, hash := d.Key.Name, specHash(d)
	vname := versionName(name, hash)
	vkey := kindKey(d.Key.Kind, vname)
	plain, hasPlain := b.live.Get(d.Key)
	ver, hasVer := b.live.Get(vkey)
	b.handled[vkey] = true
	if hasPlain && !b.claim(d, plain) || hasVer && !b.claim(d, ver) {
		return
	}

	current := name
	switch {
	case hasPlain && liveHash(plain) == hash:
		b.compareVersion(d, plain)
	case hasVer && liveHash(ver) == hash:
		current = vname
		b.compareVersion(d, ver)
	case !hasPlain && !hasVer:
		after := b.desiredCopy(d)
		b.add(Change{Action: Create, Key: d.Key, After: after, Reason: NotInCluster, Diff: describe(after)})
	case hasPlain && !hasVer && sameConfigData(d, plain):
		// A config whose content is unchanged: only its labels differ, which Swarm
		// updates in place.
		diffs := DiffLabels(d.Labels(), plain.Labels())
		if len(diffs) == 0 {
			diffs = labelDiff(d, plain)
		}
		b.add(Change{Action: Update, Key: d.Key, Before: copyResource(plain), After: b.desiredCopy(d), Reason: SourceChanged, Diff: diffs})
	case hasVer:
		// The version named after this content exists but its hash label was changed by
		// hand: its labels are all that can be wrong.
		current = vname
		b.add(Change{Action: Update, Key: vkey, Before: copyResource(ver), After: renamed(d, vname), Reason: SourceChanged, Diff: labelDiff(d, ver)})
	default:
		current = vname
		after := renamed(d, vname)
		b.add(Change{Action: Create, Key: vkey, After: after, Reason: Rotated, Diff: describe(after)})
	}
	b.versions[d.Key] = current
	b.logical[kindKey(d.Key.Kind, current)] = name

	// Every other version of this object that capstan owns is superseded.
	for _, lk := range b.live.Keys() {
		if lk.Sink != d.Key.Sink || lk.Kind != d.Key.Kind || lk.Name == current || !isVersion(lk.Name, name) {
			continue
		}
		if _, declared := b.desired.Get(lk); declared && lk != d.Key {
			continue // a distinct object that merely looks like a version
		}
		l, _ := b.live.Get(lk)
		if of := l.Labels()[LabelVersionOf]; of != "" && of != name {
			continue
		}
		if !b.owned(l) && !(b.opts.Adopt && lk == d.Key) {
			continue
		}
		b.handled[lk] = true
		b.superseded = append(b.superseded, lk)
	}
}

// compareVersion compares the labels of the live version services use with the source.
func (b *builder) compareVersion(d, l resource.Resource) {
	after := renamed(d, l.Key.Name)
	c := Change{Key: l.Key, Before: copyResource(l), After: after, Diff: DiffLabels(d.Labels(), l.Labels())}
	switch {
	case !b.owned(l):
		c.Action, c.Reason = Update, SourceChanged
		if len(c.Diff) == 0 {
			c.Diff = labelDiff(d, l)
		}
	case len(c.Diff) == 0:
		return
	default:
		b.drift(&c, d.Stack)
	}
	b.add(c)
}

// renamed copies desired secret/config d as its version called name.
func renamed(d resource.Resource, name string) *resource.Resource {
	c := copyResource(d)
	if name == d.Key.Name {
		return c
	}
	c.Key.Name = name
	labels := map[string]string{LabelVersionOf: d.Key.Name}
	for k, v := range d.Labels() {
		labels[k] = v
	}
	switch {
	case c.Secret != nil:
		c.Secret.Name, c.Secret.Labels = name, labels
	case c.Config != nil:
		c.Config.Name, c.Config.Labels = name, labels
	}
	return c
}

func sameConfigData(d, l resource.Resource) bool {
	return d.Config != nil && l.Config != nil && l.Config.Data != nil &&
		bytes.Equal(d.Config.Data, l.Config.Data) &&
		fmt.Sprint(d.Config.Templating) == fmt.Sprint(l.Config.Templating)
}

// deleteSuperseded deletes the old secret/config versions once services moved off
// them; keepInUse then keeps any a service still uses.
func (b *builder) deleteSuperseded() {
	for _, k := range b.superseded {
		l, _ := b.live.Get(k)
		b.add(Change{Action: Delete, Key: k, Before: copyResource(l), Reason: Rotated})
	}
}

// futureSpec is the spec service k will have once the plan is applied: its After when
// the plan changes it, nil when the plan deletes it, else the live spec.
func (b *builder) futureSpec(k resource.Key) *swarm.ServiceSpec {
	if c, ok := b.change(k); ok && c.Action != NoOp {
		if c.After == nil {
			return nil
		}
		return c.After.Service
	}
	if l, ok := b.live.Get(k); ok {
		return l.Service
	}
	return nil
}

// detachFromReplacedNetworks lists, on each network Replace, the live services attached
// to the network, and makes sure each of them has a change that re-attaches it.
func (b *builder) detachFromReplacedNetworks() {
	var replaced []int
	for i, c := range b.plan.Changes {
		if c.Key.Kind == resource.KindNetwork && c.Action == Replace {
			replaced = append(replaced, i)
		}
	}
	for _, i := range replaced {
		nk := b.plan.Changes[i].Key
		var detach []resource.Key
		for _, sk := range b.live.Keys() {
			l, _ := b.live.Get(sk)
			if l.Service == nil || !attachedTo(*l.Service, nk.Name) {
				continue
			}
			sc, planned := b.change(sk)
			if !b.owned(l) && !planned {
				b.warn("%s is used by %s, which capstan does not manage: replacing the network fails until it is detached", nk, sk)
				continue
			}
			detach = append(detach, sk)
			if planned && sc.Action != NoOp {
				continue
			}
			d, desired := b.desired.Get(sk)
			if !desired {
				b.warn("%s is no longer in the source but kept (prune: false); it stays detached from the replaced %s", sk, nk)
				continue
			}
			after := b.desiredCopy(d)
			carryOver(after, l, b.resolveImage(d.Stack))
			b.add(Change{Action: Update, Key: sk, Before: copyResource(l), After: after, Reason: ImmutableField,
				Diff: []FieldDiff{{Path: "TaskTemplate.Networks[" + nk.Name + "]", Before: "(detached: network replaced)", After: "(re-attached)"}}})
		}
		b.plan.Changes[i].Detach = detach
	}
}

// keepInUse drops the deletion of networks, secrets and configs a service will still
// use once the plan is applied (one capstan does not manage, or one kept by prune:
// false): Swarm refuses to remove them.
func (b *builder) keepInUse() {
	users := map[resource.Key][]string{}
	for _, sk := range unionKeys(b.desired, b.live) {
		if sk.Kind != resource.KindService {
			continue
		}
		spec := b.futureSpec(sk)
		if spec == nil {
			continue
		}
		use := func(k resource.Key) { users[k] = append(users[k], sk.Name) }
		for _, n := range append(append([]swarm.NetworkAttachmentConfig(nil), spec.TaskTemplate.Networks...), spec.Networks...) {
			use(resource.NetworkKey(n.Target))
		}
		if cs := spec.TaskTemplate.ContainerSpec; cs != nil {
			for _, r := range cs.Secrets {
				if r != nil {
					use(resource.SecretKey(r.SecretName))
				}
			}
			for _, r := range cs.Configs {
				if r != nil {
					use(resource.ConfigKey(r.ConfigName))
				}
			}
		}
	}
	kept := b.plan.Changes[:0]
	for _, c := range b.plan.Changes {
		if u := users[c.Key]; c.Action == Delete && len(u) > 0 {
			b.warn("%s is no longer needed but kept: still used by service(s) %s", c.Key, strings.Join(u, ", "))
			continue
		}
		kept = append(kept, c)
	}
	b.plan.Changes = kept
	b.changes = map[resource.Key]int{}
	for i, c := range b.plan.Changes {
		b.changes[c.Key] = i
	}
}

func attachedTo(s swarm.ServiceSpec, network string) bool {
	for _, n := range append(append([]swarm.NetworkAttachmentConfig(nil), s.TaskTemplate.Networks...), s.Networks...) {
		if n.Target == network {
			return true
		}
	}
	return false
}

func (b *builder) massDeleteGuard() error {
	if b.opts.AllowMassDelete {
		return nil
	}
	owned := 0
	for _, l := range b.live.Resources {
		if l.Key.Kind == resource.KindService && b.owned(l) {
			owned++
		}
	}
	var deleting []resource.Key
	for _, c := range b.plan.Changes {
		if c.Action == Delete && c.Key.Kind == resource.KindService {
			deleting = append(deleting, c.Key)
		}
	}
	if owned > 0 && 2*len(deleting) > owned {
		return &MassDeleteError{Owned: owned, Deleting: deleting}
	}
	return nil
}
