package slbemu

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// paramSpec is one request parameter: its name as sent, whether it is required and how
// its value is checked. Specs are written compactly, one token each:
//
//	Name            any string
//	Name!           required
//	Name:int(1..65535)   Name:str(1..80)   Name:enum(wrr|rr|wlc)   Name:onoff
//	Name:bool   Name:bw (-1 or 1..5120)   Name:uri   Name:codes (http_2xx,...)
type paramSpec struct {
	name     string
	required bool
	kind     string
	min, max int
	enum     []string
}

var specToken = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+)(?:\(([^)]*)\))?)?(!)?$`)

func specs(text string) []paramSpec {
	var out []paramSpec
	for _, tok := range strings.Fields(text) {
		m := specToken.FindStringSubmatch(tok)
		if m == nil {
			panic("slbemu: bad param spec " + tok)
		}
		ps := paramSpec{name: m[1], kind: m[2], required: m[4] == "!"}
		switch ps.kind {
		case "int", "str":
			lo, hi, ok := strings.Cut(m[3], "..")
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if !ok || err1 != nil || err2 != nil {
				panic("slbemu: bad range in " + tok)
			}
			ps.min, ps.max = a, b
		case "enum":
			ps.enum = strings.Split(m[3], "|")
		case "", "onoff", "bool", "bw", "uri", "codes":
		default:
			panic("slbemu: unknown kind in " + tok)
		}
		out = append(out, ps)
	}
	return out
}

// paramAliases are the lower-case names some SDK request structs send.
var paramAliases = map[string]string{
	"healthCheckInterval": "HealthCheckInterval",
	"healthCheckReq":      "HealthCheckReq",
	"healthCheckExp":      "HealthCheckExp",
}

func canonicalParams(p url.Values) url.Values {
	for alias, name := range paramAliases {
		if v := p.Get(alias); v != "" && p.Get(name) == "" {
			p.Set(name, v)
		}
	}
	return p
}

var healthCodes = []string{"http_2xx", "http_3xx", "http_4xx", "http_5xx"}

func (ps paramSpec) check(v string) *apiError {
	switch ps.kind {
	case "int":
		n, err := strconv.Atoi(v)
		if err != nil {
			return invalidParam(ps.name, "not an integer")
		}
		if n < ps.min || n > ps.max {
			return invalidParam(ps.name, fmt.Sprintf("%d is outside %d..%d", n, ps.min, ps.max))
		}
	case "str":
		if n := len([]rune(v)); n < ps.min || n > ps.max {
			return invalidParam(ps.name, fmt.Sprintf("length %d is outside %d..%d", n, ps.min, ps.max))
		}
	case "enum":
		if !slices.Contains(ps.enum, v) {
			return invalidParam(ps.name, "want one of "+strings.Join(ps.enum, ", "))
		}
	case "onoff":
		if v != "on" && v != "off" {
			return invalidParam(ps.name, "want on or off")
		}
	case "bool":
		if v != "true" && v != "false" {
			return invalidParam(ps.name, "want true or false")
		}
	case "bw":
		n, err := strconv.Atoi(v)
		if err != nil || n == 0 || n < -1 || n > 5120 {
			return invalidParam(ps.name, "want -1 or 1..5120")
		}
	case "uri":
		if len(v) > 80 || !strings.HasPrefix(v, "/") {
			return invalidParam(ps.name, "want 1 to 80 characters starting with /")
		}
	case "codes":
		for c := range strings.SplitSeq(v, ",") {
			if !slices.Contains(healthCodes, c) {
				return invalidParam(ps.name, "want a comma list of http_2xx, http_3xx, http_4xx, http_5xx")
			}
		}
	}
	return nil
}

// accept checks the parameters named in list and returns the non-empty ones; other
// parameters are ignored, as the real API does with names it does not know.
func accept(list []paramSpec, p url.Values) (map[string]string, *apiError) {
	out := map[string]string{}
	for _, ps := range list {
		v := p.Get(ps.name)
		if v == "" {
			if ps.required {
				return nil, missingParam(ps.name)
			}
			continue
		}
		if err := ps.check(v); err != nil {
			return nil, err
		}
		out[ps.name] = v
	}
	return out, nil
}

// tagParams reads Tag.N.Key / Tag.N.Value (N from 1, up to 20).
func tagParams(p url.Values) ([]Tag, *apiError) {
	var tags []Tag
	for i := 1; ; i++ {
		k, v := p.Get(fmt.Sprintf("Tag.%d.Key", i)), p.Get(fmt.Sprintf("Tag.%d.Value", i))
		if k == "" && v == "" {
			break
		}
		if k == "" {
			return nil, missingParam(fmt.Sprintf("Tag.%d.Key", i))
		}
		if len(k) > 64 || strings.HasPrefix(k, "aliyun") || strings.HasPrefix(k, "acs:") {
			return nil, invalidParam(fmt.Sprintf("Tag.%d.Key", i), "at most 64 characters, not starting with aliyun or acs:")
		}
		if len(v) > 128 {
			return nil, invalidParam(fmt.Sprintf("Tag.%d.Value", i), "at most 128 characters")
		}
		if i > 20 {
			return nil, invalidParam("Tag", "at most 20 tags")
		}
		tags = append(tags, Tag{Key: k, Value: v})
	}
	return tags, nil
}

// repeated reads Name.1, Name.2, ...
func repeated(p url.Values, name string) []string {
	var out []string
	for i := 1; ; i++ {
		v := p.Get(name + "." + strconv.Itoa(i))
		if v == "" {
			return out
		}
		out = append(out, v)
	}
}

// paramMap flattens the request for the call log, without the signature.
func paramMap(p url.Values) map[string]string {
	out := make(map[string]string, len(p))
	for k, v := range p {
		if k != "Signature" && len(v) > 0 {
			out[k] = v[0]
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
