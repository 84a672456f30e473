package swarm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
)

// Apply carries out one change. Creates send c.After; updates send c.After's spec against
// c.Before's ID and version (so a concurrent writer is detected, not overwritten blindly);
// deletes remove c.Before. The error names the change and wraps the Engine's error.
//
// Per kind:
//   - service: Create, Update (live ForceUpdate kept), Scale (the live spec with c.After's
//     replica count and labels, so a Scale never reverts drift the plan chose to leave),
//     Replace (remove, then create), Delete. Secret and config references that carry a
//     name but no ID are resolved by name first; a missing one fails the change before
//     anything is written. With c.QueryRegistry (the plan's reading of the stack's
//     resolveImage) the Docker client asks the registry, through the engine, for the
//     image's digest and platforms and pins them, as docker stack deploy does; when the
//     registry cannot be reached the image goes out unpinned and the client's warning
//     is passed to OnWarning.
//   - network: Create (driver defaults to overlay), Replace, Delete (which waits, until
//     ctx is done, for tasks of removed services to detach and the network to be gone).
//     Swarm cannot change a network in place, so Update and Scale fail: plan a Replace.
//   - secret, config: content is immutable in Swarm. Update changes labels only, and the
//     desired content is sent along so Swarm refuses the update if it differs; rotation
//     (a new name, then a Delete of the old one) is planned by reconcile.
//
// Objects created or updated get dev.capstan.managed-by=<instance>, the stack namespace
// label (when the resource has a Stack) and dev.capstan.spec-hash (resource.SpecHash of
// c.After) unless c.After already carries them. A Delete refuses an object that is not
// this instance's; whether an Update or Replace may take one over is the plan's call
// (--adopt). A Replace or Delete of a network first detaches the services listed in
// c.Detach (each read afresh and updated; its own later change re-attaches it).
//
// An update that loses a race ("update out of sequence") re-reads the object and is tried
// once more with the fresh version. A Delete of something already gone succeeds.
func (s *Sink) Apply(ctx context.Context, c reconcile.Change) error {
	if err := s.apply(ctx, c); err != nil {
		return fmt.Errorf("swarm: %s %s: %w", c.Action, c.Key, err)
	}
	return nil
}

func (s *Sink) apply(ctx context.Context, c reconcile.Change) error {
	if c.Key.Sink != resource.SinkSwarm {
		return errors.New("key is not a swarm key")
	}
	switch c.Action {
	case reconcile.NoOp:
		return nil
	case reconcile.Create:
		if c.After == nil {
			return errors.New("create without a desired object (Change.After is nil)")
		}
		return s.create(ctx, c.Key, c.After, c.QueryRegistry)
	case reconcile.Update, reconcile.Scale:
		if c.After == nil {
			return errors.New("update without a desired object (Change.After is nil)")
		}
		if err := s.checkOwner(c); err != nil {
			return err
		}
		return s.update(ctx, c)
	case reconcile.Replace:
		if c.After == nil {
			return errors.New("replace without a desired object (Change.After is nil)")
		}
		if err := s.checkOwner(c); err != nil {
			return err
		}
		if err := s.detach(ctx, c); err != nil {
			return err
		}
		if err := s.remove(ctx, c.Key, c.Before); err != nil {
			return fmt.Errorf("remove the old object: %w", err)
		}
		if err := s.create(ctx, c.Key, c.After, c.QueryRegistry); err != nil {
			return fmt.Errorf("old object removed, but creating its replacement failed: %w", err)
		}
		return nil
	case reconcile.Delete:
		if err := s.checkOwner(c); err != nil {
			return err
		}
		if err := s.detach(ctx, c); err != nil {
			return err
		}
		return s.remove(ctx, c.Key, c.Before)
	}
	return fmt.Errorf("unknown action %q", string(c.Action))
}

// checkOwner refuses to delete a live object that is not this instance's. Whether an
// Update, Scale or Replace may take over an object capstan does not own is the plan's
// decision (--adopt); a delete is the one write that cannot be undone, so the sink checks
// it again.
func (s *Sink) checkOwner(c reconcile.Change) error {
	if c.Before == nil {
		return errors.New("the live object is missing from the change (Change.Before is nil)")
	}
	if c.Action != reconcile.Delete {
		return nil
	}
	switch owner := c.Before.Owner(); owner {
	case s.instance:
		return nil
	case "":
		return fmt.Errorf("not managed by capstan (no %s label): refusing to delete it", resource.LabelManagedBy)
	default:
		return fmt.Errorf("managed by capstan instance %q, not %q: refusing to delete it", owner, s.instance)
	}
}

// ownedLabels returns a copy of labels stamped as this instance's, for r.
func (s *Sink) ownedLabels(labels map[string]string, r *resource.Resource) (map[string]string, error) {
	out := cloneMap(labels)
	if out == nil {
		out = map[string]string{}
	}
	if o := out[resource.LabelManagedBy]; o != "" && o != s.instance {
		return nil, fmt.Errorf("desired object is labelled %s=%s, but this is capstan instance %q", resource.LabelManagedBy, o, s.instance)
	}
	out[resource.LabelManagedBy] = s.instance
	if r.Stack != "" {
		if ns, ok := out[resource.LabelNamespace]; !ok {
			out[resource.LabelNamespace] = r.Stack
		} else if ns != r.Stack {
			return nil, fmt.Errorf("desired object is labelled %s=%s but belongs to stack %q", resource.LabelNamespace, ns, r.Stack)
		}
	}
	if out[resource.LabelSpecHash] == "" {
		out[resource.LabelSpecHash] = resource.SpecHash(*r)
	}
	return out, nil
}

func (s *Sink) create(ctx context.Context, key resource.Key, r *resource.Resource, queryRegistry bool) error {
	switch key.Kind {
	case resource.KindService:
		spec, err := s.desiredService(ctx, key, r)
		if err != nil {
			return err
		}
		resp, err := s.cli.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{QueryRegistry: queryRegistry})
		if err != nil {
			return fmt.Errorf("create service: %w", err)
		}
		s.warn(key, resp.Warnings)
	case resource.KindNetwork:
		if r.Network == nil {
			return errors.New("desired network has no spec")
		}
		opts, err := deepCopy(*r.Network)
		if err != nil {
			return err
		}
		if opts.Labels, err = s.ownedLabels(opts.Labels, r); err != nil {
			return err
		}
		if opts.Driver == "" {
			// As docker stack deploy: a stack network without a driver is an overlay (the
			// engine's own default, bridge, is local and no use to services).
			opts.Driver = "overlay"
		}
		if _, err := s.cli.NetworkCreate(ctx, key.Name, opts); err != nil {
			return fmt.Errorf("create network: %w", err)
		}
	case resource.KindSecret:
		if r.Secret == nil {
			return errors.New("desired secret has no spec")
		}
		spec, err := deepCopy(*r.Secret)
		if err != nil {
			return err
		}
		if err := checkName(key, &spec.Annotations); err != nil {
			return err
		}
		if spec.Labels, err = s.ownedLabels(spec.Labels, r); err != nil {
			return err
		}
		if _, err := s.cli.SecretCreate(ctx, spec); err != nil {
			return fmt.Errorf("create secret: %w", err)
		}
	case resource.KindConfig:
		if r.Config == nil {
			return errors.New("desired config has no spec")
		}
		spec, err := deepCopy(*r.Config)
		if err != nil {
			return err
		}
		if err := checkName(key, &spec.Annotations); err != nil {
			return err
		}
		if spec.Labels, err = s.ownedLabels(spec.Labels, r); err != nil {
			return err
		}
		if _, err := s.cli.ConfigCreate(ctx, spec); err != nil {
			return fmt.Errorf("create config: %w", err)
		}
	default:
		return fmt.Errorf("unknown kind %q", key.Kind)
	}
	return nil
}

// desiredService is r's spec ready to send: a deep copy, named, labelled, with secret and
// config references resolved to IDs.
func (s *Sink) desiredService(ctx context.Context, key resource.Key, r *resource.Resource) (swarm.ServiceSpec, error) {
	if r.Service == nil {
		return swarm.ServiceSpec{}, errors.New("desired service has no spec")
	}
	spec, err := deepCopy(*r.Service)
	if err != nil {
		return spec, err
	}
	if err := checkName(key, &spec.Annotations); err != nil {
		return spec, err
	}
	if spec.Labels, err = s.ownedLabels(spec.Labels, r); err != nil {
		return spec, err
	}
	if err := s.resolveReferences(ctx, &spec); err != nil {
		return spec, err
	}
	return spec, nil
}

// checkName fills an empty spec name from the key and rejects a different one.
func checkName(key resource.Key, a *swarm.Annotations) error {
	if a.Name == "" {
		a.Name = key.Name
	}
	if a.Name != key.Name {
		return fmt.Errorf("spec is named %q, key says %q", a.Name, key.Name)
	}
	return nil
}

// resolveReferences fills the IDs of secret and config references given by name only,
// with one list request per kind. Every missing name is reported at once.
func (s *Sink) resolveReferences(ctx context.Context, spec *swarm.ServiceSpec) error {
	cs := spec.TaskTemplate.ContainerSpec
	if cs == nil {
		return nil
	}
	var missing []string

	secretNames := filters.NewArgs()
	for _, ref := range cs.Secrets {
		if ref != nil && ref.SecretID == "" {
			secretNames.Add("name", ref.SecretName)
		}
	}
	if secretNames.Len() > 0 {
		list, err := s.cli.SecretList(ctx, swarm.SecretListOptions{Filters: secretNames})
		if err != nil {
			return fmt.Errorf("look up secrets: %w", err)
		}
		ids := map[string]string{}
		for _, sec := range list {
			ids[sec.Spec.Name] = sec.ID // the name filter also matches prefixes: keep exact names
		}
		for _, ref := range cs.Secrets {
			if ref == nil || ref.SecretID != "" {
				continue
			}
			if id, ok := ids[ref.SecretName]; ok {
				ref.SecretID = id
			} else {
				missing = append(missing, fmt.Sprintf("secret %q", ref.SecretName))
			}
		}
	}

	configNames := filters.NewArgs()
	for _, ref := range cs.Configs {
		if ref != nil && ref.ConfigID == "" {
			configNames.Add("name", ref.ConfigName)
		}
	}
	if configNames.Len() > 0 {
		list, err := s.cli.ConfigList(ctx, swarm.ConfigListOptions{Filters: configNames})
		if err != nil {
			return fmt.Errorf("look up configs: %w", err)
		}
		ids := map[string]string{}
		for _, cfg := range list {
			ids[cfg.Spec.Name] = cfg.ID
		}
		for _, ref := range cs.Configs {
			if ref == nil || ref.ConfigID != "" {
				continue
			}
			if id, ok := ids[ref.ConfigName]; ok {
				ref.ConfigID = id
			} else {
				missing = append(missing, fmt.Sprintf("config %q", ref.ConfigName))
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("service %s refers to %s, which the swarm does not have: create it first or fix the reference",
			spec.Name, strings.Join(missing, ", "))
	}
	return nil
}

func (s *Sink) update(ctx context.Context, c reconcile.Change) error {
	if c.Before.ID == "" {
		return errors.New("the live object has no ID (Change.Before.ID is empty)")
	}
	switch c.Key.Kind {
	case resource.KindService:
		return s.updateService(ctx, c)
	case resource.KindNetwork:
		return errors.New("swarm cannot change a network in place: the plan must Replace it")
	case resource.KindSecret:
		return s.updateSecret(ctx, c)
	case resource.KindConfig:
		return s.updateConfig(ctx, c)
	}
	return fmt.Errorf("unknown kind %q", c.Key.Kind)
}

func (s *Sink) updateService(ctx context.Context, c reconcile.Change) error {
	if c.Before.Service == nil {
		return errors.New("the live service has no spec (Change.Before.Service is nil)")
	}
	var spec swarm.ServiceSpec
	var err error
	if c.Action == reconcile.Scale {
		spec, err = s.scaledService(c.Before.Service, c.After)
	} else {
		spec, err = s.desiredService(ctx, c.Key, c.After)
	}
	if err != nil {
		return err
	}
	// ForceUpdate is a counter `docker service update --force` bumps; sending another
	// value would restart every task.
	spec.TaskTemplate.ForceUpdate = c.Before.Service.TaskTemplate.ForceUpdate

	// A Scale sends the live spec, whose image is already what it is: no registry call.
	opts := swarm.ServiceUpdateOptions{QueryRegistry: c.QueryRegistry && c.Action != reconcile.Scale}
	version := swarm.Version{Index: c.Before.Version}
	resp, err := s.cli.ServiceUpdate(ctx, c.Before.ID, version, spec, opts)
	if !outOfSequence(err) {
		if err != nil {
			return fmt.Errorf("update service: %w", err)
		}
		s.warn(c.Key, resp.Warnings)
		return nil
	}
	// Someone wrote the service since it was observed: re-read it and try once more.
	live, _, rerr := s.cli.ServiceInspectWithRaw(ctx, c.Before.ID, swarm.ServiceInspectOptions{})
	if rerr != nil {
		return fmt.Errorf("update service: %w; re-read after the conflict: %w", err, rerr)
	}
	if c.Action == reconcile.Scale {
		if spec, err = s.scaledService(&live.Spec, c.After); err != nil {
			return err
		}
	}
	spec.TaskTemplate.ForceUpdate = live.Spec.TaskTemplate.ForceUpdate
	resp, err = s.cli.ServiceUpdate(ctx, live.ID, live.Version, spec, opts)
	if err != nil {
		return fmt.Errorf("update service (retried at version %d after a concurrent change): %w", live.Version.Index, err)
	}
	s.warn(c.Key, resp.Warnings)
	return nil
}

// scaledService is the live spec with the desired replica count and labels (the labels
// carry the new spec hash, so the next plan sees the scale as applied).
func (s *Sink) scaledService(live *swarm.ServiceSpec, after *resource.Resource) (swarm.ServiceSpec, error) {
	if after.Service == nil {
		return swarm.ServiceSpec{}, errors.New("desired service has no spec")
	}
	if after.Service.Mode.Replicated == nil {
		return swarm.ServiceSpec{}, errors.New("scale needs a replicated service; the desired one is not")
	}
	spec, err := deepCopy(*live)
	if err != nil {
		return spec, err
	}
	if spec.Mode.Replicated == nil {
		return spec, errors.New("scale needs a replicated service; the live one is not (plan a Replace)")
	}
	replicas := uint64(1)
	if r := after.Service.Mode.Replicated.Replicas; r != nil {
		replicas = *r
	}
	spec.Mode.Replicated.Replicas = &replicas
	if spec.Labels, err = s.ownedLabels(after.Service.Labels, after); err != nil {
		return spec, err
	}
	return spec, nil
}

func (s *Sink) updateSecret(ctx context.Context, c reconcile.Change) error {
	if c.Before.Secret == nil || c.After.Secret == nil {
		return errors.New("secret spec missing from the change")
	}
	before, after := c.Before.Secret, c.After.Secret
	if err := checkName(c.Key, &swarm.Annotations{Name: after.Name}); err != nil {
		return err
	}
	if changed(before.Driver, after.Driver) || changed(before.Templating, after.Templating) {
		return errors.New("a secret's driver and templating cannot change in Swarm: rotate it (new name) instead")
	}
	labels, err := s.ownedLabels(after.Labels, c.After)
	if err != nil {
		return err
	}
	// Data goes along so Swarm itself refuses the update if the content differs (it never
	// returns secret content, so that cannot be checked here).
	spec := swarm.SecretSpec{Annotations: swarm.Annotations{Name: c.Key.Name, Labels: labels},
		Data: after.Data, Driver: before.Driver, Templating: before.Templating}
	err = s.cli.SecretUpdate(ctx, c.Before.ID, swarm.Version{Index: c.Before.Version}, spec)
	if outOfSequence(err) {
		live, _, rerr := s.cli.SecretInspectWithRaw(ctx, c.Before.ID)
		if rerr != nil {
			return fmt.Errorf("update secret: %w; re-read after the conflict: %w", err, rerr)
		}
		err = s.cli.SecretUpdate(ctx, live.ID, live.Version, spec)
	}
	if err != nil {
		return fmt.Errorf("update secret labels (content is immutable; a content change must rotate the secret): %w", err)
	}
	return nil
}

func (s *Sink) updateConfig(ctx context.Context, c reconcile.Change) error {
	if c.Before.Config == nil || c.After.Config == nil {
		return errors.New("config spec missing from the change")
	}
	before, after := c.Before.Config, c.After.Config
	if err := checkName(c.Key, &swarm.Annotations{Name: after.Name}); err != nil {
		return err
	}
	if after.Data != nil && !bytes.Equal(before.Data, after.Data) {
		return errors.New("a config's content cannot change in Swarm: rotate it (new name) instead")
	}
	if changed(before.Templating, after.Templating) {
		return errors.New("a config's templating cannot change in Swarm: rotate it (new name) instead")
	}
	labels, err := s.ownedLabels(after.Labels, c.After)
	if err != nil {
		return err
	}
	spec := swarm.ConfigSpec{Annotations: swarm.Annotations{Name: c.Key.Name, Labels: labels},
		Data: before.Data, Templating: before.Templating}
	err = s.cli.ConfigUpdate(ctx, c.Before.ID, swarm.Version{Index: c.Before.Version}, spec)
	if outOfSequence(err) {
		live, _, rerr := s.cli.ConfigInspectWithRaw(ctx, c.Before.ID)
		if rerr != nil {
			return fmt.Errorf("update config: %w; re-read after the conflict: %w", err, rerr)
		}
		err = s.cli.ConfigUpdate(ctx, live.ID, live.Version, spec)
	}
	if err != nil {
		return fmt.Errorf("update config labels: %w", err)
	}
	return nil
}

// detach takes the network of c off every service in c.Detach, so that it can be
// removed: Swarm refuses to remove a network a service uses. Each service is read afresh
// (the plan holds no version for it) and updated once, retried once on a version
// conflict; its own later change in the plan attaches it to the new network.
func (s *Sink) detach(ctx context.Context, c reconcile.Change) error {
	if len(c.Detach) == 0 {
		return nil
	}
	if c.Key.Kind != resource.KindNetwork {
		return fmt.Errorf("Detach is only meaningful for a network, not a %s", c.Key.Kind)
	}
	netID := ""
	if c.Before != nil {
		netID = c.Before.ID
	}
	for _, svcKey := range c.Detach {
		if svcKey.Sink != resource.SinkSwarm || svcKey.Kind != resource.KindService {
			return fmt.Errorf("detach %s: not a swarm service", svcKey)
		}
		var err error
		for attempt := 0; attempt < 2; attempt++ {
			var svc swarm.Service
			svc, _, err = s.cli.ServiceInspectWithRaw(ctx, svcKey.Name, swarm.ServiceInspectOptions{})
			if cerrdefs.IsNotFound(err) {
				err = nil
				break
			}
			if err != nil {
				break
			}
			spec, ok := withoutNetwork(svc.Spec, netID, c.Key.Name)
			if !ok {
				break
			}
			_, err = s.cli.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{QueryRegistry: false})
			if !outOfSequence(err) {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("detach service %s from the network: %w", svcKey.Name, err)
		}
	}
	return nil
}

// withoutNetwork returns spec minus its attachments to the network (by ID or name), and
// whether there was one. Attachments in the deprecated Spec.Networks move to
// TaskTemplate.Networks on the way: Swarm refuses a change to Spec.Networks alone.
func withoutNetwork(spec swarm.ServiceSpec, id, name string) (swarm.ServiceSpec, bool) {
	var kept []swarm.NetworkAttachmentConfig
	found := false
	for _, a := range append(append([]swarm.NetworkAttachmentConfig(nil), spec.TaskTemplate.Networks...), spec.Networks...) {
		if (id != "" && a.Target == id) || a.Target == name {
			found = true
			continue
		}
		kept = append(kept, a)
	}
	if !found {
		return spec, false
	}
	spec.TaskTemplate.Networks = kept
	spec.Networks = nil
	return spec, true
}

// changed reports whether the desired value of an optional field is set and differs from
// the live one (unset desired means "whatever is there").
func changed[T any](live, desired *T) bool {
	if desired == nil {
		return false
	}
	if live == nil {
		return true
	}
	a, _ := json.Marshal(live)
	b, _ := json.Marshal(desired)
	return !bytes.Equal(a, b)
}

func (s *Sink) remove(ctx context.Context, key resource.Key, before *resource.Resource) error {
	if before == nil {
		return errors.New("the live object is missing from the change (Change.Before is nil)")
	}
	ref := before.ID
	if ref == "" {
		ref = key.Name
	}
	var err error
	switch key.Kind {
	case resource.KindService:
		err = s.cli.ServiceRemove(ctx, ref)
	case resource.KindNetwork:
		err = s.removeNetwork(ctx, ref)
	case resource.KindSecret:
		err = s.cli.SecretRemove(ctx, ref)
	case resource.KindConfig:
		err = s.cli.ConfigRemove(ctx, ref)
	default:
		return fmt.Errorf("unknown kind %q", key.Kind)
	}
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove %s: %w", key.Kind, err)
	}
	return nil
}

// removeNetwork removes a network and waits until it is gone. Engine 20.10 accepts the
// removal of a network that tasks of just-removed services still use, marks it pending
// and keeps listing it until they have detached (a few seconds); other versions refuse
// with "in use by task" / "active endpoints" instead, which is retried. Either way the
// wait (backing off up to 2s) lasts until ctx is done, so an Observe or a create of the
// same name right after never meets the old network. A network still used by a service
// fails at once: waiting would not help.
func (s *Sink) removeNetwork(ctx context.Context, id string) error {
	delay := 100 * time.Millisecond
	sleep := func(cause error) error {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up waiting for tasks to detach: %w)", cause, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
		return nil
	}
	for {
		err := s.cli.NetworkRemove(ctx, id)
		if err == nil || cerrdefs.IsNotFound(err) {
			break
		}
		if !networkDetaching(err) {
			return err
		}
		if err := sleep(err); err != nil {
			return err
		}
	}
	for {
		_, err := s.cli.NetworkInspect(ctx, id, network.InspectOptions{})
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		if err == nil {
			err = errors.New("network removed but still listed")
		}
		if err := sleep(err); err != nil {
			return err
		}
	}
}

// networkDetaching recognises the errors of removing a network whose tasks are going away.
func networkDetaching(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "in use by task") || strings.Contains(msg, "has active endpoints")
}

// outOfSequence recognises swarmkit's optimistic-concurrency failure. Engine 20.10 sends
// it as a 500 with the gRPC text, so the message is all there is to go by.
func outOfSequence(err error) bool {
	return err != nil && strings.Contains(err.Error(), "update out of sequence")
}

// deepCopy copies a spec through its wire form, the same JSON the Engine receives.
func deepCopy[T any](v T) (T, error) {
	var out T
	b, err := json.Marshal(v)
	if err != nil {
		return out, fmt.Errorf("copy spec: %w", err)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, fmt.Errorf("copy spec: %w", err)
	}
	return out, nil
}
