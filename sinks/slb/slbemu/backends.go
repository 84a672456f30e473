package slbemu

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// backendParam is one entry of a BackendServers parameter.
type backendParam struct {
	ServerID    string
	Port        int
	Weight      int
	hasWeight   bool
	Type        string
	ServerIP    string
	Description string
	hasDesc     bool
}

// parseBackends reads a BackendServers-style JSON array as leniently as the real API:
// double or single quotes, keys in any case, numbers or numeric strings, unknown keys
// ignored. withPort requires a Port (VServer groups); max bounds the entries.
func parseBackends(name, raw string, withPort bool, max int) ([]backendParam, *apiError) {
	var items []map[string]any
	if err := json.Unmarshal([]byte(raw), &items); err != nil {
		if err2 := json.Unmarshal([]byte(strings.ReplaceAll(raw, "'", `"`)), &items); err2 != nil {
			return nil, invalidParam(name, "not a JSON array of backend servers: "+err.Error())
		}
	}
	if len(items) == 0 {
		return nil, invalidParam(name, "no backend servers given")
	}
	if len(items) > max {
		return nil, invalidParam(name, fmt.Sprintf("%d backend servers in one call; at most %d are allowed", len(items), max))
	}
	seen := map[string]bool{}
	var out []backendParam
	for i, item := range items {
		b := backendParam{Type: "ecs", Weight: 100}
		for k, v := range item {
			switch strings.ToLower(k) {
			case "serverid":
				b.ServerID = scalar(v)
			case "port":
				n, err := strconv.Atoi(scalar(v))
				if err != nil {
					return nil, invalidParam(name, fmt.Sprintf("entry %d: Port %q is not an integer", i+1, scalar(v)))
				}
				b.Port = n
			case "weight":
				n, err := strconv.Atoi(scalar(v))
				if err != nil {
					return nil, invalidParam(name, fmt.Sprintf("entry %d: Weight %q is not an integer", i+1, scalar(v)))
				}
				b.Weight, b.hasWeight = n, true
			case "type":
				if t := scalar(v); t != "" {
					b.Type = t
				}
			case "serverip":
				b.ServerIP = scalar(v)
			case "description":
				b.Description, b.hasDesc = scalar(v), true
			}
		}
		switch {
		case b.ServerID == "":
			return nil, invalidParam(name, fmt.Sprintf("entry %d: ServerId is missing", i+1))
		case withPort && (b.Port < 1 || b.Port > 65535):
			return nil, invalidParam(name, fmt.Sprintf("entry %d: Port must be 1..65535", i+1))
		case b.Weight < 0 || b.Weight > 100:
			return nil, invalidParam(name, fmt.Sprintf("entry %d: Weight must be 0..100", i+1))
		case b.Type != "ecs" && b.Type != "eni" && b.Type != "eci":
			return nil, invalidParam(name, fmt.Sprintf("entry %d: Type must be ecs, eni or eci", i+1))
		case b.Type != "ecs" && b.ServerIP == "":
			return nil, invalidParam(name, fmt.Sprintf("entry %d: ServerIp is required for type %s", i+1, b.Type))
		case len(b.Description) > 80:
			return nil, invalidParam(name, fmt.Sprintf("entry %d: Description is longer than 80 characters", i+1))
		}
		k := b.key()
		if seen[k] {
			continue // the first of duplicated entries wins
		}
		seen[k] = true
		out = append(out, b)
	}
	return out, nil
}

func (b backendParam) key() string {
	return backendKey(b.ServerID, b.Port, b.Type, b.ServerIP)
}

func backendKey(serverID string, port int, typ, ip string) string {
	k := serverID + ":" + strconv.Itoa(port)
	if typ == "eni" || typ == "eci" {
		k += ":" + ip
	}
	return k
}

func scalar(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}
