package manifests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/capstan-dev/capstan/resource"
)

// A Distributed Application Bundle (.dab, Version 0.1) is the JSON file
// `docker-compose bundle` wrote for the experimental `docker deploy` of Docker
// 1.12–19.03. The original decoder ignored unknown keys and never checked Version;
// capstan's is strict instead, and reports every problem with its line.

// dabBundle is a decoded bundle.
type dabBundle struct {
	Version  string
	Services map[string]*dabService
}

type dabService struct {
	Image      string
	Command    []string
	Args       []string
	Env        []string
	Labels     map[string]string
	Ports      []dabPort
	WorkingDir string
	User       string
	Networks   []string
	line       int // line of the service's key
}

type dabPort struct {
	Protocol string
	Port     uint32
}

// dabProblem is a problem inside a bundle, before it is tied to a file.
type dabProblem struct {
	line int
	msg  string
}

// swarmNameRE is what Swarm accepts for service and network names (swarmkit
// controlapi/common.go), checked here on the part the bundle contributes.
var swarmNameRE = regexp.MustCompile(`^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$`)

// decodeDAB decodes a bundle strictly: known keys only (matched case-insensitively, as
// the original decoder did), each at most once, with the right JSON types; Version must
// be "0.1", every service needs an Image, ports need a protocol tcp, udp or sctp and a
// port 1–65535. A JSON syntax error stops decoding; other problems are all collected.
func decodeDAB(data []byte) (*dabBundle, []dabProblem) {
	d := &dabDecoder{data: data, lines: newLineIndex(data), dec: json.NewDecoder(bytes.NewReader(data))}
	d.dec.UseNumber()
	b := &dabBundle{}
	var sawVersion, sawServices bool
	err := d.object("", func(key string, line int) error {
		switch {
		case strings.EqualFold(key, "Version"):
			sawVersion = true
			v, err := d.str("Version")
			if err != nil {
				return err
			}
			b.Version = v
			if v != "0.1" {
				d.problemf(line, "Version: %q is not supported; capstan reads bundle version \"0.1\"", v)
			}
		case strings.EqualFold(key, "Services"):
			sawServices = true
			b.Services = map[string]*dabService{}
			return d.object("Services", func(name string, line int) error {
				s := &dabService{line: line}
				if !swarmNameRE.MatchString(name) {
					d.problemf(line, "Services: %q is not a valid service name (letters, digits, '-' and '_', starting and ending with a letter or digit)", name)
				}
				if _, dup := b.Services[name]; dup {
					d.problemf(line, "Services: service %q is defined twice", name)
				}
				b.Services[name] = s
				return d.service(name, line, s)
			})
		default:
			d.problemf(line, "%s: unknown field; a bundle has Version and Services", key)
			return d.skip()
		}
		return nil
	})
	if err != nil {
		return nil, append(d.problems, d.syntaxProblem(err))
	}
	if d.notObject {
		return nil, d.problems
	}
	if _, err := d.dec.Token(); err != io.EOF {
		off := d.dec.InputOffset()
		return nil, append(d.problems, dabProblem{d.lines.line(off), "unexpected data after the bundle's closing }"})
	}
	if !sawVersion {
		d.problemf(1, "Version is missing; want \"0.1\"")
	}
	if !sawServices || len(b.Services) == 0 {
		d.problemf(1, "Services is missing or empty; a bundle needs at least one service")
	}
	if len(d.problems) > 0 {
		return nil, d.problems
	}
	return b, nil
}

type dabDecoder struct {
	data      []byte
	lines     lineIndex
	dec       *json.Decoder
	problems  []dabProblem
	notObject bool // the bundle is not a JSON object at all
}

func (d *dabDecoder) problemf(line int, format string, args ...any) {
	d.problems = append(d.problems, dabProblem{line, fmt.Sprintf(format, args...)})
}

// syntaxError marks an error that ends decoding; its line is already known.
type syntaxError struct {
	line int
	msg  string
}

func (e *syntaxError) Error() string { return e.msg }

func (d *dabDecoder) syntaxProblem(err error) dabProblem {
	var se *syntaxError
	if errors.As(err, &se) {
		return dabProblem{se.line, se.msg}
	}
	var jse *json.SyntaxError
	if errors.As(err, &jse) {
		return dabProblem{d.lines.line(jse.Offset), fmt.Sprintf("invalid JSON at byte %d: %s", jse.Offset, jse.Error())}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return dabProblem{d.lines.line(int64(len(d.data))), "invalid JSON: the bundle ends too early"}
	}
	return dabProblem{d.lines.line(d.dec.InputOffset()), "invalid JSON: " + err.Error()}
}

// next returns the next token and the line it starts on.
func (d *dabDecoder) next() (json.Token, int, error) {
	off := d.dec.InputOffset()
	for off < int64(len(d.data)) {
		switch d.data[off] {
		case ' ', '\t', '\r', '\n', ',', ':':
			off++
			continue
		}
		break
	}
	t, err := d.dec.Token()
	return t, d.lines.line(off), err
}

// object reads a JSON object, calling f for each key with the value still unread;
// f must consume the value.
func (d *dabDecoder) object(path string, f func(key string, line int) error) error {
	t, line, err := d.next()
	if err != nil {
		return err
	}
	if t != json.Delim('{') {
		if err := d.skipRest(t); err != nil {
			return err
		}
		d.problemf(line, "%s: want a JSON object, got %s", pathOrDoc(path), describeToken(t))
		if path == "" {
			d.notObject = true
		}
		return nil
	}
	seen := map[string]int{}
	for d.dec.More() {
		kt, kline, err := d.next()
		if err != nil {
			return err
		}
		key, _ := kt.(string)
		lk := strings.ToLower(key)
		if first, dup := seen[lk]; dup {
			d.problemf(kline, "%s: duplicate key (first on line %d)", joinPath(path, key), first)
			if err := d.skip(); err != nil {
				return err
			}
			continue
		}
		seen[lk] = kline
		if err := f(key, kline); err != nil {
			return err
		}
	}
	_, _, err = d.next() // the closing }
	return err
}

func (d *dabDecoder) service(name string, line int, s *dabService) error {
	path := "Services." + name
	var sawImage bool
	err := d.object(path, func(key string, kline int) error {
		fp := path + "." + key
		var err error
		switch strings.ToLower(key) {
		case "image":
			sawImage = true
			s.Image, err = d.str(fp)
			if err == nil && strings.TrimSpace(s.Image) == "" {
				d.problemf(kline, "%s: must not be empty", fp)
			}
		case "command":
			s.Command, err = d.strList(fp)
		case "args":
			s.Args, err = d.strList(fp)
		case "env":
			s.Env, err = d.strList(fp)
			for _, e := range s.Env {
				if k, _, _ := strings.Cut(e, "="); k == "" {
					d.problemf(kline, "%s: %q has no variable name; want NAME=value", fp, e)
				}
			}
		case "labels":
			s.Labels, err = d.strMap(fp)
		case "ports":
			s.Ports, err = d.ports(fp)
		case "workingdir":
			s.WorkingDir, err = d.str(fp)
		case "user":
			s.User, err = d.str(fp)
		case "networks":
			s.Networks, err = d.strList(fp)
			for _, n := range s.Networks {
				if !swarmNameRE.MatchString(n) {
					d.problemf(kline, "%s: %q is not a valid network name", fp, n)
				}
			}
		default:
			d.problemf(kline, "%s: unknown field; a service has Image, Command, Args, Env, Labels, Ports, WorkingDir, User and Networks", fp)
			err = d.skip()
		}
		return err
	})
	if err != nil {
		return err
	}
	if !sawImage {
		d.problemf(line, "%s: Image is required", path)
	}
	return nil
}

func (d *dabDecoder) ports(path string) ([]dabPort, error) {
	var ports []dabPort
	seen := map[dabPort]bool{}
	err := d.array(path, func(i int, line int) error {
		ip := fmt.Sprintf("%s[%d]", path, i)
		var p dabPort
		var sawPort bool
		err := d.object(ip, func(key string, kline int) error {
			switch strings.ToLower(key) {
			case "protocol":
				v, err := d.str(ip + ".Protocol")
				if err != nil {
					return err
				}
				p.Protocol = v
				switch v {
				case "tcp", "udp", "sctp":
				default:
					d.problemf(kline, "%s.Protocol: %q is not one of tcp, udp, sctp", ip, v)
				}
			case "port":
				sawPort = true
				t, tline, err := d.next()
				if err != nil {
					return err
				}
				n, ok := t.(json.Number)
				if !ok {
					if err := d.skipRest(t); err != nil {
						return err
					}
					d.problemf(tline, "%s.Port: want a number, got %s", ip, describeToken(t))
					return nil
				}
				v, perr := strconv.ParseUint(n.String(), 10, 32)
				if perr != nil || v < 1 || v > 65535 {
					d.problemf(tline, "%s.Port: %s is not a port (1 to 65535)", ip, n)
					return nil
				}
				p.Port = uint32(v)
			default:
				d.problemf(kline, "%s.%s: unknown field; a port has Protocol and Port", ip, key)
				return d.skip()
			}
			return nil
		})
		if err != nil {
			return err
		}
		if !sawPort {
			d.problemf(line, "%s: Port is required", ip)
			return nil
		}
		if p.Protocol == "" {
			p.Protocol = "tcp"
		}
		if seen[p] {
			d.problemf(line, "%s: port %d/%s is listed twice", ip, p.Port, p.Protocol)
		}
		seen[p] = true
		ports = append(ports, p)
		return nil
	})
	return ports, err
}

// array reads a JSON array, calling f for each element with the element unread.
func (d *dabDecoder) array(path string, f func(i, line int) error) error {
	t, line, err := d.next()
	if err != nil {
		return err
	}
	if t == nil {
		return nil // null: no elements
	}
	if t != json.Delim('[') {
		if err := d.skipRest(t); err != nil {
			return err
		}
		d.problemf(line, "%s: want a JSON array, got %s", path, describeToken(t))
		return nil
	}
	for i := 0; d.dec.More(); i++ {
		off := d.dec.InputOffset()
		if err := f(i, d.lineAfter(off)); err != nil {
			return err
		}
	}
	_, _, err = d.next()
	return err
}

func (d *dabDecoder) lineAfter(off int64) int {
	for off < int64(len(d.data)) {
		switch d.data[off] {
		case ' ', '\t', '\r', '\n', ',', ':':
			off++
			continue
		}
		break
	}
	return d.lines.line(off)
}

func (d *dabDecoder) str(path string) (string, error) {
	t, line, err := d.next()
	if err != nil {
		return "", err
	}
	s, ok := t.(string)
	if !ok {
		if err := d.skipRest(t); err != nil {
			return "", err
		}
		d.problemf(line, "%s: want a string, got %s", path, describeToken(t))
	}
	return s, nil
}

func (d *dabDecoder) strList(path string) ([]string, error) {
	var out []string
	err := d.array(path, func(i, _ int) error {
		s, err := d.str(fmt.Sprintf("%s[%d]", path, i))
		out = append(out, s)
		return err
	})
	return out, err
}

func (d *dabDecoder) strMap(path string) (map[string]string, error) {
	out := map[string]string{}
	err := d.object(path, func(key string, _ int) error {
		s, err := d.str(path + "." + key)
		out[key] = s
		return err
	})
	return out, err
}

// skip consumes one whole value.
func (d *dabDecoder) skip() error {
	t, _, err := d.next()
	if err != nil {
		return err
	}
	return d.skipRest(t)
}

// skipRest consumes the rest of a value whose first token was t.
func (d *dabDecoder) skipRest(t json.Token) error {
	if t != json.Delim('{') && t != json.Delim('[') {
		return nil
	}
	for depth := 1; depth > 0; {
		t, _, err := d.next()
		if err != nil {
			return err
		}
		switch t {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

func describeToken(t json.Token) string {
	switch v := t.(type) {
	case json.Delim:
		switch v {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
		return string(v)
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", t)
}

// convertDAB turns a bundle into Swarm resources the way `docker deploy` did in Docker
// 1.13–19.03 (deploy_bundlefile.go), with what that left out: WorkingDir and User are
// kept, networks go on TaskTemplate.Networks (Spec.Networks is deprecated), and the
// spec has the shape `docker stack deploy` gives a compose service (image label,
// non-nil Privileges, Resources and Placement, ingress ports). Ports carry only the
// container port, so Swarm assigns the published port. No restart policy or mode is
// set: Swarm's defaults (restart any, one replica) apply, as they did.
func convertDAB(stack, file string, b *dabBundle) []resource.Resource {
	var out []resource.Resource
	nets := map[string]int{} // network name → first line using it
	names := sortedKeys(b.Services)
	for _, name := range names {
		s := b.Services[name]
		labels := map[string]string{}
		for k, v := range s.Labels {
			labels[k] = v
		}
		labels[resource.LabelNamespace] = stack
		labels[resource.LabelImage] = s.Image

		var ports []swarm.PortConfig
		for _, p := range s.Ports {
			ports = append(ports, swarm.PortConfig{
				Protocol:    swarm.PortConfigProtocol(p.Protocol),
				TargetPort:  p.Port,
				PublishMode: swarm.PortConfigPublishModeIngress,
			})
		}
		var attach []swarm.NetworkAttachmentConfig
		for _, n := range s.Networks {
			target := stack + "_" + n
			if _, ok := nets[target]; !ok {
				nets[target] = s.line
			}
			attach = append(attach, swarm.NetworkAttachmentConfig{Target: target, Aliases: []string{name}})
		}
		sort.Slice(attach, func(i, j int) bool { return attach[i].Target < attach[j].Target })

		spec := &swarm.ServiceSpec{
			Annotations: swarm.Annotations{Name: stack + "_" + name, Labels: labels},
			TaskTemplate: swarm.TaskSpec{
				ContainerSpec: &swarm.ContainerSpec{
					Image:      s.Image,
					Labels:     map[string]string{resource.LabelNamespace: stack},
					Command:    s.Command,
					Args:       s.Args,
					Env:        s.Env,
					Dir:        s.WorkingDir,
					User:       s.User,
					Privileges: &swarm.Privileges{},
				},
				Resources: &swarm.ResourceRequirements{},
				Placement: &swarm.Placement{},
				Networks:  attach,
			},
			Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{}},
			EndpointSpec: &swarm.EndpointSpec{Ports: ports},
		}
		out = append(out, resource.Resource{
			Key:     resource.ServiceKey(spec.Name),
			Stack:   stack,
			Source:  fmt.Sprintf("%s:%d", file, s.line),
			Service: spec,
		})
	}
	for _, target := range sortedKeys(nets) {
		out = append(out, resource.Resource{
			Key:    resource.NetworkKey(target),
			Stack:  stack,
			Source: fmt.Sprintf("%s:%d", file, nets[target]),
			// No driver, as docker deploy sent it: Swarm's create makes it an
			// overlay, and compose stacks' networks look the same.
			Network: &network.CreateOptions{
				Labels: map[string]string{resource.LabelNamespace: stack},
			},
		})
	}
	return out
}

// loadBundle reads, decodes and converts one bundle file.
func loadBundle(stack, rel, abs string) ([]resource.Resource, Problems) {
	data, err := readCapped(abs)
	if err != nil {
		return nil, Problems{errorAt(rel, 0, "%v", err)}
	}
	if why := binaryReason(data); why != "" {
		return nil, Problems{errorAt(rel, 0, "not a text file (%s); a bundle is JSON", why)}
	}
	b, dps := decodeDAB(data)
	if len(dps) > 0 {
		ps := make(Problems, len(dps))
		for i, p := range dps {
			ps[i] = errorAt(rel, p.line, "%s", p.msg)
		}
		return nil, ps
	}
	var ps Problems
	for _, name := range sortedKeys(b.Services) {
		if full := stack + "_" + name; len(full) > maxNameLen {
			ps = append(ps, errorAt(rel, b.Services[name].line, "Services.%s: service name %q is longer than %d characters", name, full, maxNameLen))
		}
	}
	if len(ps) > 0 {
		return nil, ps
	}
	return convertDAB(stack, rel, b), nil
}
