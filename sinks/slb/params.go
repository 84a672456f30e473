package slb

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/capstan-dev/capstan/resource"
)

// onOff spells a switch as SLB wants it.
func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// listenerParams are the request parameters that give a listener the settings of l
// (normalized first), for Create*Listener (create) or Set*ListenerAttribute. live, when
// not nil, is the listener being changed: settings SLB can only reset by an explicit
// value are then sent as that value.
func listenerParams(l resource.SLBListener, groupID string, create bool, live *resource.SLBListener) map[string]string {
	l = l.Normalized()
	itoa := strconv.Itoa
	p := map[string]string{
		"LoadBalancerId": l.LoadBalancerID,
		"ListenerPort":   itoa(l.Port),
		"Bandwidth":      itoa(l.Bandwidth),
		"Scheduler":      l.Scheduler,
		"Description":    l.Description,
		"VServerGroupId": groupID,
		"AclStatus":      onOff(l.ACL.Enabled),
	}
	if !create {
		p["VServerGroup"] = "on"
	}
	if l.ACL.Enabled {
		p["AclId"], p["AclType"] = l.ACL.ID, l.ACL.Type
	}
	hc := l.HealthCheck
	if l.Layer7() {
		p["HealthCheck"] = onOff(hc.Enabled)
		if hc.Enabled {
			p["HealthCheckURI"] = hc.URI
			p["HealthCheckHttpCode"] = strings.Join(hc.HTTPCode, ",")
			p["HealthCheckInterval"] = itoa(hc.Interval)
			p["HealthCheckTimeout"] = itoa(hc.Timeout)
			p["HealthyThreshold"] = itoa(hc.HealthyThreshold)
			p["UnhealthyThreshold"] = itoa(hc.UnhealthyThreshold)
			switch {
			case hc.Domain != "":
				p["HealthCheckDomain"] = hc.Domain
			case live != nil && live.HealthCheck.Domain != "" && live.HealthCheck.Domain != "$_ip":
				p["HealthCheckDomain"] = "$_ip" // back to the backend's IP
			}
			if hc.ConnectPort > 0 {
				p["HealthCheckConnectPort"] = itoa(hc.ConnectPort)
			}
		}
		ss := l.StickySession
		p["StickySession"] = onOff(ss.Enabled)
		if ss.Enabled {
			p["StickySessionType"] = ss.Type
			if ss.Type == "insert" {
				p["CookieTimeout"] = itoa(ss.Timeout)
			} else {
				p["Cookie"] = ss.Cookie
			}
		}
		p["XForwardedFor"] = onOff(l.XForwardedFor)
		p["Gzip"] = onOff(l.Gzip)
		p["IdleTimeout"] = itoa(l.IdleTimeout)
		p["RequestTimeout"] = itoa(l.RequestTimeout)
		if l.Protocol == "https" {
			p["ServerCertificateId"] = l.CertificateID
		}
		return p
	}
	p["HealthCheckSwitch"] = onOff(hc.Enabled)
	if hc.Enabled {
		if l.Protocol == "tcp" {
			p["HealthCheckType"] = "tcp"
		}
		p["HealthCheckConnectTimeout"] = itoa(hc.Timeout)
		p["HealthCheckInterval"] = itoa(hc.Interval)
		p["HealthyThreshold"] = itoa(hc.HealthyThreshold)
		p["UnhealthyThreshold"] = itoa(hc.UnhealthyThreshold)
		if hc.ConnectPort > 0 {
			p["HealthCheckConnectPort"] = itoa(hc.ConnectPort)
		}
	}
	return p
}

// setParams fills the SDK request req (a pointer to one of the generated request
// structs) from params keyed by wire name. The name is matched exactly, else ignoring
// case: the TCP and UDP create requests spell healthCheckInterval in lower case. A name
// the request does not have is a programming error.
func setParams(req any, params map[string]string) error {
	v := reflect.ValueOf(req).Elem()
	t := v.Type()
	exact := map[string]int{}
	folded := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		name := t.Field(i).Tag.Get("name")
		if name == "" || t.Field(i).Type.Kind() != reflect.String {
			continue
		}
		exact[name] = i
		folded[strings.ToLower(name)] = i
	}
	for name, val := range params {
		i, ok := exact[name]
		if !ok {
			i, ok = folded[strings.ToLower(name)]
		}
		if !ok {
			// RegionId and the like live on the embedded RpcRequest.
			if f := v.FieldByName(name); f.IsValid() && f.Kind() == reflect.String && f.CanSet() {
				f.SetString(val)
				continue
			}
			return fmt.Errorf("slb: %s has no parameter %s", t.Name(), name)
		}
		v.Field(i).SetString(val)
	}
	return nil
}

// backendJSON is the BackendServers parameter of the VServer group actions.
func backendJSON(bs []resource.SLBBackend, description string) string {
	type entry struct {
		ServerID    string `json:"ServerId"`
		Port        string `json:"Port"`
		Weight      string `json:"Weight,omitempty"`
		Type        string `json:"Type"`
		Description string `json:"Description,omitempty"`
	}
	out := make([]entry, 0, len(bs))
	for _, b := range bs {
		typ := b.Type
		if typ == "" {
			typ = "ecs"
		}
		e := entry{ServerID: b.ServerID, Port: strconv.Itoa(b.Port), Type: typ, Description: description}
		if b.Weight >= 0 {
			e.Weight = strconv.Itoa(b.Weight)
		}
		out = append(out, e)
	}
	raw, _ := json.Marshal(out) // strings only: cannot fail
	return string(raw)
}

// batches splits bs into runs of at most n.
func batches[T any](bs []T, n int) [][]T {
	var out [][]T
	for len(bs) > n {
		out = append(out, bs[:n])
		bs = bs[n:]
	}
	if len(bs) > 0 {
		out = append(out, bs)
	}
	return out
}
