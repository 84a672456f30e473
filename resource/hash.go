package resource

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
)

// SpecHash is the content hash of a resource's desired spec, written to LabelSpecHash on
// apply and compared with it on the next plan. capstan's own dev.capstan.* labels are left
// out, so stamping the hash (or a new revision) never changes it.
func SpecHash(r Resource) string {
	var v any
	switch {
	case r.Service != nil:
		s := *r.Service
		s.Labels = withoutCapstanLabels(s.Labels)
		v = s
	case r.Network != nil:
		n := *r.Network
		n.Labels = withoutCapstanLabels(n.Labels)
		v = n
	case r.Secret != nil:
		s := *r.Secret
		s.Labels = withoutCapstanLabels(s.Labels)
		v = s
	case r.Config != nil:
		c := *r.Config
		c.Labels = withoutCapstanLabels(c.Labels)
		v = c
	case r.Route != nil:
		v = r.Route
	case r.SLBListener != nil:
		l := r.SLBListener.Normalized()
		l.VServerGroupID = "" // live only
		v = l
	case r.VServerGroup != nil:
		v = r.VServerGroup.Normalized()
	}
	// encoding/json sorts map keys, so equal specs always give equal bytes.
	b, err := json.Marshal(v)
	if err != nil {
		// Only channels, funcs and cycles fail to marshal; specs hold none of them.
		panic("resource: spec hash: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:32]
}

func withoutCapstanLabels(in map[string]string) map[string]string {
	if in == nil {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		if !strings.HasPrefix(k, "dev.capstan.") {
			out[k] = v
		}
	}
	return out
}
