package manifests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
	k8syaml "sigs.k8s.io/yaml"
)

// Documents are decoded twice, on purpose. gopkg.in/yaml.v3 parses each document into a
// node tree that knows line numbers: it finds syntax errors, alias bombs, unknown or
// duplicate fields and wrong shapes — all of them, each at its line. Only a document
// that passes is then decoded by sigs.k8s.io/yaml in strict mode (the decoder the design
// names), whose rare remaining errors are mapped back to a line through the node tree.

// maxExpandedNodes bounds how large a document may become once its aliases are
// expanded. Manifests are a few hundred nodes; a "billion laughs" document is billions.
const maxExpandedNodes = 100_000

// capstanMarker finds files meant as capstan manifests without parsing them: a file is
// a manifest file when an apiVersion in it mentions capstan. That includes misspelt
// ones (capstan.io/v1, capstan/v1alpha1), so a typo is an error rather than a file
// silently ignored.
var capstanMarker = regexp.MustCompile(`(?i)apiVersion["']?[ \t]*:[ \t]*["']?[^\s"'#]*capstan`)

// docChunk is one YAML document of a multi-document file.
type docChunk struct {
	data      []byte
	startLine int // 1-based line of the chunk's first line in the file
}

// splitDocuments cuts a YAML stream at "---" lines, keeping each chunk's first line so
// line numbers inside a chunk translate back to the file. The marker line stays in the
// chunk that it opens, which YAML allows.
func splitDocuments(data []byte) []docChunk {
	var chunks []docChunk
	start, startLine, line := 0, 1, 1
	// A chunk is cut at a marker once it holds content or a marker of its own, so
	// leading comments and directives stay with the document they precede.
	hasContent, hasMarker := false, false
	for i := 0; i < len(data); {
		end := i
		for end < len(data) && data[end] != '\n' {
			end++
		}
		l := data[i:end]
		if isDocMarker(l) {
			if hasContent || hasMarker {
				chunks = append(chunks, docChunk{data: data[start:i], startLine: startLine})
				start, startLine = i, line
			}
			hasMarker = true
			// The marker line may carry content itself ("--- {a: 1}").
			rest := bytes.TrimSpace(l[3:])
			hasContent = len(rest) > 0 && rest[0] != '#'
		} else if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' && t[0] != '%' {
			hasContent = true
		}
		i = end + 1
		line++
	}
	if start < len(data) || len(chunks) == 0 {
		chunks = append(chunks, docChunk{data: data[start:], startLine: startLine})
	}
	return chunks
}

func isDocMarker(l []byte) bool {
	if len(l) < 3 || string(l[:3]) != "---" {
		return false
	}
	return len(l) == 3 || l[3] == ' ' || l[3] == '\t' || l[3] == '\r'
}

// yamlLineError matches the "yaml: line N: msg" form both YAML libraries use.
var yamlLineError = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parsedDoc is one document parsed into a node tree, with where it came from.
type parsedDoc struct {
	file   string
	chunk  docChunk
	root   *yaml.Node // the top-level mapping
	lines  fieldLines // field path → line, filled by the strict walk
	header docHeader
}

type docHeader struct {
	APIVersion string
	Kind       string
	kindLine   int
	apiLine    int
}

// line translates a line inside the chunk to a line in the file.
func (d *parsedDoc) line(nodeLine int) int {
	if nodeLine <= 0 {
		return d.chunk.startLine
	}
	return nodeLine + d.chunk.startLine - 1
}

// parseChunk parses one document. It returns nil (and no problems) for an empty
// document: comments only, or a bare "---".
func parseChunk(file string, c docChunk) (*parsedDoc, Problems) {
	var n yaml.Node
	if err := yaml.Unmarshal(c.data, &n); err != nil {
		line, msg := c.startLine, err.Error()
		if m := yamlLineError.FindStringSubmatch(msg); m != nil {
			l, _ := strconv.Atoi(m[1])
			line, msg = l+c.startLine-1, m[2]
		} else {
			msg = strings.TrimPrefix(msg, "yaml: ")
		}
		return nil, Problems{errorAt(file, line, "YAML syntax error: %s", msg)}
	}
	if n.Kind == 0 || len(n.Content) == 0 {
		return nil, nil
	}
	d := &parsedDoc{file: file, chunk: c}
	top := n.Content[0]
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		return nil, nil
	}
	if size := expandedSize(top, maxExpandedNodes); size > maxExpandedNodes {
		return nil, Problems{errorAt(file, d.line(top.Line),
			"YAML aliases expand this document to more than %d nodes (an alias bomb?); write it out without nested aliases", maxExpandedNodes)}
	}
	if top.Kind != yaml.MappingNode {
		return nil, Problems{errorAt(file, d.line(top.Line), "document is %s, not a mapping with apiVersion, kind, metadata and spec", describeNode(top))}
	}
	d.root = top
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			continue
		}
		switch k.Value {
		case "apiVersion":
			d.header.APIVersion, d.header.apiLine = v.Value, d.line(v.Line)
		case "kind":
			d.header.Kind, d.header.kindLine = v.Value, d.line(v.Line)
		}
	}
	return d, nil
}

// expandedSize counts the nodes of n with every alias expanded, stopping early once
// the count passes limit. Anchored nodes are counted once and memoized, so the count
// itself is cheap even for a bomb.
func expandedSize(n *yaml.Node, limit int) int {
	memo := map[*yaml.Node]int{}
	active := map[*yaml.Node]bool{}
	var size func(n *yaml.Node) int
	size = func(n *yaml.Node) int {
		if n == nil {
			return 0
		}
		if v, ok := memo[n]; ok {
			return v
		}
		if active[n] {
			return limit + 1 // an alias inside its own anchor never ends
		}
		active[n] = true
		total := 1
		if n.Kind == yaml.AliasNode {
			total += size(n.Alias)
		}
		for _, c := range n.Content {
			total += size(c)
			if total > limit {
				break
			}
		}
		delete(active, n)
		if total > limit {
			total = limit + 1
		}
		memo[n] = total
		return total
	}
	return size(n)
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
			return strconv.Quote(v) + " (quoted, so a string)"
		}
		return strconv.Quote(v)
	}
	return "empty"
}

// fieldLines maps a field path ("spec.compose[1]", "spec.listener.port") to its line.
type fieldLines map[string]int

// at returns the line of path, or of its nearest recorded ancestor.
func (fl fieldLines) at(path string) int {
	for p := path; p != ""; {
		if l, ok := fl[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return fl[""]
}

// strictDecode checks d's node tree against out's type, reporting every unknown,
// duplicate or wrongly shaped field at its line, and, when there are none, decodes the
// document into out with sigs.k8s.io/yaml in strict mode.
func strictDecode(d *parsedDoc, out any) Problems {
	w := &strictWalker{doc: d, lines: fieldLines{"": d.line(d.root.Line)}}
	w.walk(d.root, reflect.TypeOf(out).Elem(), "")
	d.lines = w.lines
	if len(w.problems) > 0 {
		return w.problems
	}
	if err := k8syaml.UnmarshalStrict(d.chunk.data, out); err != nil {
		return Problems{d.decodeError(err)}
	}
	return nil
}

// decodeError turns a sigs.k8s.io/yaml error into a Problem at the best known line.
func (d *parsedDoc) decodeError(err error) Problem {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		path := te.Field
		return errorAt(d.file, d.lines.at(path), "%s: cannot use %s as %s", path, te.Value, te.Type)
	}
	msg := err.Error()
	for _, p := range []string{"error converting YAML to JSON: ", "error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	line := d.lines.at("")
	if m := yamlLineError.FindStringSubmatch(msg); m != nil {
		l, _ := strconv.Atoi(m[1])
		line, msg = d.line(l), m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	return errorAt(d.file, line, "%s", msg)
}

type strictWalker struct {
	doc      *parsedDoc
	lines    fieldLines
	problems Problems
}

func (w *strictWalker) errorf(n *yaml.Node, format string, args ...any) {
	w.problems = append(w.problems, errorAt(w.doc.file, w.doc.line(n.Line), format, args...))
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func (w *strictWalker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		// The anchor's own content is checked where it is defined; the strict decode
		// that follows checks the expanded document as a whole.
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // null leaves the zero value, as JSON null does
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.errorf(n, "%s: want a mapping, got %s", pathOrDoc(path), describeNode(n))
			return
		}
		fields := jsonFields(t)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				w.errorf(k, "%s: keys must be plain strings", pathOrDoc(path))
				continue
			}
			if k.Value == "<<" {
				continue // merge key: its content was checked at the anchor
			}
			fp := joinPath(path, k.Value)
			if first, dup := seen[k.Value]; dup {
				w.errorf(k, "%s: duplicate field (first set on line %d)", fp, first)
				continue
			}
			seen[k.Value] = w.doc.line(k.Line)
			f, ok := fields.byName[k.Value]
			if !ok {
				w.errorf(k, "%s: unknown field%s", fp, fields.suggest(k.Value))
				continue
			}
			w.lines[fp] = w.doc.line(k.Line)
			w.walk(v, f.Type, fp)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.errorf(n, "%s: want a mapping, got %s", pathOrDoc(path), describeNode(n))
			return
		}
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				w.errorf(k, "%s: keys must be plain strings", pathOrDoc(path))
				continue
			}
			fp := joinPath(path, k.Value)
			if first, dup := seen[k.Value]; dup {
				w.errorf(k, "%s: duplicate key (first set on line %d)", fp, first)
				continue
			}
			seen[k.Value] = w.doc.line(k.Line)
			w.lines[fp] = w.doc.line(k.Line)
			w.walk(v, t.Elem(), fp)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.errorf(n, "%s: want a list, got %s", pathOrDoc(path), describeNode(n))
			return
		}
		for i, c := range n.Content {
			ip := fmt.Sprintf("%s[%d]", path, i)
			w.lines[ip] = w.doc.line(c.Line)
			w.walk(c, t.Elem(), ip)
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.errorf(n, "%s: want a string, got %s", path, describeNode(n))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			w.errorf(n, "%s: want true or false, got %s", path, describeNode(n))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			if n.Kind == yaml.ScalarNode && n.Tag == "!!float" && allDigits(n.Value) {
				w.errorf(n, "%s: %s is out of range", path, n.Value)
				return
			}
			w.errorf(n, "%s: want an integer, got %s", path, describeNode(n))
			return
		}
		bits := t.Bits()
		var err error
		if t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64 {
			_, err = strconv.ParseUint(n.Value, 0, bits)
		} else {
			_, err = strconv.ParseInt(n.Value, 0, bits)
		}
		if err != nil {
			w.errorf(n, "%s: %s is out of range", path, n.Value)
		}
	}
}

func allDigits(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func pathOrDoc(path string) string {
	if path == "" {
		return "document"
	}
	return path
}

type structFields struct {
	byName map[string]reflect.StructField
	names  []string // in declaration order
}

// jsonFields lists the JSON names a struct accepts, as encoding/json would, except
// that names match exactly: "Spec" is not "spec".
func jsonFields(t reflect.Type) structFields {
	sf := structFields{byName: map[string]reflect.StructField{}}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		sf.byName[name] = f
		sf.names = append(sf.names, name)
	}
	return sf
}

// suggest names the closest known field, or lists them all.
func (sf structFields) suggest(got string) string {
	best, bestDist := "", 3
	for _, n := range sf.names {
		d := editDistance(strings.ToLower(got), strings.ToLower(n))
		if d < bestDist && d < (len(got)+1)/2 {
			best, bestDist = n, d
		}
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	names := append([]string(nil), sf.names...)
	sort.Strings(names)
	return "; known fields: " + strings.Join(names, ", ")
}

// editDistance is the optimal-string-alignment distance: insertions, deletions,
// substitutions and adjacent transpositions ("nmae" is one step from "name").
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

func errorAt(file string, line int, format string, args ...any) Problem {
	return Problem{File: file, Line: line, Severity: Error, Message: fmt.Sprintf(format, args...)}
}

func warningAt(file string, line int, format string, args ...any) Problem {
	return Problem{File: file, Line: line, Severity: Warning, Message: fmt.Sprintf(format, args...)}
}
