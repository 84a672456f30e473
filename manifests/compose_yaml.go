package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v4"
)

// compose-go reports no positions, so every compose file is also parsed once into a
// node tree by the YAML library compose-go itself uses (go.yaml.in/yaml/v4, whose syntax
// errors also carry the position of the fault rather than of the enclosing block). The tree is only ever used to answer "on which line of which file is
// services.web.privileged?" for problems; the model itself comes from compose-go.

// composeDoc is one input compose file.
type composeDoc struct {
	abs  string
	rel  string // relative to the source root, slash-separated
	data []byte
	root *yaml.Node // the top-level mapping of the first document; nil when unparsable
}

// composeYAMLPos finds "line N" or "line N, column M" in a YAML syntax error; the last
// one is where the fault is (earlier ones name the enclosing block).
var composeYAMLPos = regexp.MustCompile(`line (\d+)(?:, column \d+)?:? ?`)

// composeYAMLError splits a YAML library error into the line of the fault and a message.
func composeYAMLError(msg string) (int, string) {
	msg = strings.TrimPrefix(msg, "yaml: ")
	locs := composeYAMLPos.FindAllStringSubmatchIndex(msg, -1)
	if len(locs) == 0 {
		return 0, msg
	}
	last := locs[len(locs)-1]
	line, _ := strconv.Atoi(msg[last[2]:last[3]])
	rest := strings.TrimSpace(msg[last[1]:])
	if rest == "" {
		rest = msg
	}
	// This release of the library counts lines from 0 in parser errors and from 1 in
	// scanner errors; parser errors are the "while parsing" / "did not find expected" ones.
	if strings.Contains(msg, "while parsing") || strings.HasPrefix(rest, "did not find expected") {
		line++
	}
	return line, rest
}

// parse fills d.root, returning problems when the file is not a YAML mapping or repeats
// a key.
func (d *composeDoc) parse() Problems {
	var doc yaml.Node
	err := yaml.NewDecoder(bytes.NewReader(d.data)).Decode(&doc)
	if err != nil && !errors.Is(err, io.EOF) {
		line, msg := composeYAMLError(err.Error())
		return Problems{{File: d.rel, Line: line, Severity: Error, Message: "YAML syntax: " + msg}}
	}
	if len(doc.Content) == 0 {
		return Problems{{File: d.rel, Severity: Error, Message: "the compose file is empty"}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return Problems{{File: d.rel, Line: root.Line, Severity: Error,
			Message: "a compose file must be a mapping with a services key at the top level"}}
	}
	d.root = root
	var probs Problems
	composeDuplicateKeys(root, "", func(line int, path, key string, first int) {
		probs = append(probs, Problem{File: d.rel, Line: line, Severity: Error,
			Message: fmt.Sprintf("%s%s is defined twice (first at line %d)", path, key, first)})
	})
	return probs
}

// composeDuplicateKeys reports keys repeated within one mapping, which YAML forbids and
// which would otherwise silently keep the last value. Aliases are not followed, so an
// alias bomb costs nothing here.
func composeDuplicateKeys(n *yaml.Node, path string, report func(line int, path, key string, first int)) {
	switch n.Kind {
	case yaml.MappingNode:
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.Tag != "!!merge" && k.Value != "<<" {
				if first, dup := seen[k.Value]; dup {
					report(k.Line, path, k.Value, first)
				} else {
					seen[k.Value] = k.Line
				}
			}
			composeDuplicateKeys(v, path+k.Value+".", report)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			composeDuplicateKeys(v, fmt.Sprintf("%s%d.", path, i), report)
		}
	}
}

// lookup finds the node at path: mapping keys by name, sequence items by numeric index.
// It returns the line of the deepest part it could match (the key's line for mapping
// entries) and whether the whole path matched. "[]" matches no particular item, so the
// search stops at the sequence.
func (d *composeDoc) lookup(path ...string) (line int, found bool) {
	if d.root == nil {
		return 0, false
	}
	n := d.root
	for i, part := range path {
		n = composeDeref(n)
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			key, val := composeMapEntry(n, part, 0)
			if key == nil {
				return line, false
			}
			line, next = key.Line, val
		case yaml.SequenceNode:
			idx, err := strconv.Atoi(part)
			if err != nil || idx < 0 || idx >= len(n.Content) {
				return line, false
			}
			next = n.Content[idx]
			line = next.Line
		default:
			return line, false
		}
		if i == len(path)-1 {
			return line, true
		}
		n = next
	}
	return line, len(path) == 0
}

// scalar returns the scalar value at path, if there is one.
func (d *composeDoc) scalar(path ...string) (string, int, bool) {
	if d.root == nil {
		return "", 0, false
	}
	n := d.root
	line := 0
	for _, part := range path {
		n = composeDeref(n)
		if n.Kind != yaml.MappingNode {
			return "", 0, false
		}
		k, v := composeMapEntry(n, part, 0)
		if k == nil {
			return "", 0, false
		}
		n, line = v, k.Line
	}
	n = composeDeref(n)
	if n.Kind != yaml.ScalarNode {
		return "", 0, false
	}
	return n.Value, line, true
}

// child returns the value of a top-level key, or nil.
func (d *composeDoc) child(key string) *yaml.Node {
	if d.root == nil {
		return nil
	}
	_, v := composeMapEntry(d.root, key, 0)
	return v
}

// topKeys lists the top-level keys with their lines.
func (d *composeDoc) topKeys() map[string]int {
	out := map[string]int{}
	if d.root == nil {
		return out
	}
	for i := 0; i+1 < len(d.root.Content); i += 2 {
		k := d.root.Content[i]
		out[k.Value] = k.Line
	}
	return out
}

func composeDeref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return n.Content[0]
	}
	return n
}

// composeMapEntry finds key in a mapping, following "<<" merge keys the way YAML does:
// an explicit key wins over a merged one. depth bounds merge chains.
func composeMapEntry(m *yaml.Node, key string, depth int) (*yaml.Node, *yaml.Node) {
	if depth > 16 {
		return nil, nil
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Value == key && k.Tag != "!!merge" {
			return k, v
		}
		if k.Tag == "!!merge" || (k.Value == "<<" && k.Style == 0) {
			merges = append(merges, v)
		}
	}
	for _, mv := range merges {
		mv = composeDeref(mv)
		var sources []*yaml.Node
		switch mv.Kind {
		case yaml.MappingNode:
			sources = []*yaml.Node{mv}
		case yaml.SequenceNode:
			sources = mv.Content
		}
		for _, src := range sources {
			src = composeDeref(src)
			if src.Kind != yaml.MappingNode {
				continue
			}
			if k, v := composeMapEntry(src, key, depth+1); k != nil {
				// The key lives in the anchored mapping; its line still points the user at
				// the text that set the value.
				return k, v
			}
		}
	}
	return nil, nil
}

// readComposeInput reads one file of the source tree, bounded in size like every file
// capstan reads (MaxFileSize).
func readComposeInput(abs string) ([]byte, error) {
	f, err := os.Open(abs)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("is a directory")
	}
	if st.Size() > MaxFileSize {
		return nil, composeTooLarge{st.Size()}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, composeTooLarge{int64(len(data))}
	}
	return data, nil
}

// composeTooLarge is the error for a file over MaxFileSize, worded as the tree loader
// words it.
type composeTooLarge struct{ size int64 }

func (e composeTooLarge) Error() string { return tooLarge(e.size).Error() }

func composeIsTooLarge(err error) bool {
	var tl composeTooLarge
	return errors.As(err, &tl)
}

// composeRel renders abs relative to root, slash-separated; paths outside root are
// returned as given (they only appear in messages about escaping the tree).
func composeRel(root, abs string) string {
	rel, err := filepath.Rel(root, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return filepath.ToSlash(abs)
	}
	return filepath.ToSlash(rel)
}
