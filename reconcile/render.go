package reconcile

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"strconv"
	"strings"
)

// RenderOptions tune the plan renderers. Each renderer takes at most one; none means
// the zero value.
type RenderOptions struct {
	// Color adds ANSI colours to the text rendering (for a terminal).
	Color bool
}

func firstOptions(opts []RenderOptions) RenderOptions {
	if len(opts) > 0 {
		return opts[0]
	}
	return RenderOptions{}
}

// JSONFormatVersion is the format_version of RenderJSON's output. It changes only when
// a field is removed or changes meaning; added fields keep it (docs/json-output.md).
const JSONFormatVersion = "1"

const (
	noChangesLine = "No changes. Live state matches the source."
	arrow         = " -> "
)

// visible returns the changes a reader is shown: every change but NoOps.
func visible(p Plan) []Change {
	var out []Change
	for _, c := range p.Changes {
		if c.Action != NoOp {
			out = append(out, c)
		}
	}
	return out
}

// driftEntry is one drifted object with what the plan does about it.
type driftEntry struct {
	Change   Change
	Reverted bool
}

func driftEntries(p Plan) []driftEntry {
	byKey := map[string]Change{}
	for _, c := range p.Changes {
		byKey[c.Key.String()] = c
	}
	out := make([]driftEntry, 0, len(p.Drift))
	for _, k := range p.Drift {
		c, ok := byKey[k.String()]
		if !ok {
			c = Change{Action: NoOp, Key: k, Reason: Drift}
		}
		out = append(out, driftEntry{Change: c, Reverted: c.Action != NoOp})
	}
	return out
}

func summaryLine(s Summary) string {
	return fmt.Sprintf("Plan: %d to add, %d to change, %d to destroy.", s.Add, s.Change, s.Destroy)
}

// showValue makes a value printable on one line.
func showValue(v string) string {
	if v == "" {
		return `""`
	}
	if strings.ContainsAny(v, "\n\r\t") || v != strings.TrimSpace(v) {
		return strconv.Quote(v)
	}
	return v
}

// fieldLine renders one field difference: "+ path: new", "- path: old" or
// "~ path: old -> new".
func fieldLine(d FieldDiff) (glyph byte, text string) {
	switch {
	case d.Before == "":
		return '+', d.Path + ": " + showValue(d.After)
	case d.After == "":
		return '-', d.Path + ": " + showValue(d.Before)
	}
	return '~', d.Path + ": " + showValue(d.Before) + arrow + showValue(d.After)
}

var ansi = map[byte]string{'+': "\033[32m", '-': "\033[31m", '~': "\033[33m", '^': "\033[36m", '!': "\033[35m"}

const ansiReset = "\033[0m"

// errWriter remembers the first write error so renderers can write freely and report it.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

// RenderText writes the plan for a terminal or a log, like `terraform plan`: one line per
// change (glyph, key, reason), its field differences indented beneath, drift and
// warnings, and a last line "Plan: N to add, N to change, N to destroy." — or
// "No changes. Live state matches the source." when there is nothing to do or report.
func RenderText(w io.Writer, p Plan, options ...RenderOptions) error {
	out := &errWriter{w: w}
	opts := firstOptions(options)
	paint := func(glyph byte, s string) string {
		if !opts.Color {
			return s
		}
		if c, ok := ansi[glyph]; ok {
			return c + s + ansiReset
		}
		return s
	}
	glyphOf := func(a Action) string {
		if a == Replace {
			return paint('!', string(a))
		}
		return paint(byte(a), string(a))
	}
	fields := func(diffs []FieldDiff, indent string) {
		for _, d := range diffs {
			g, text := fieldLine(d)
			out.printf("%s%s %s\n", indent, paint(g, string(g)), text)
		}
	}

	changes := visible(p)
	drift := driftEntries(p)
	if len(changes) == 0 && len(drift) == 0 && len(p.Warnings) == 0 {
		if p.Revision != "" {
			out.printf("Revision: %s\n\n", p.Revision)
		}
		out.printf("%s\n", noChangesLine)
		return out.err
	}
	if p.Revision != "" {
		out.printf("Revision: %s\n\n", p.Revision)
	}
	if len(changes) > 0 {
		out.printf("capstan will perform the following actions:\n\n")
		for _, c := range changes {
			out.printf("  %s %s (%s)\n", glyphOf(c.Action), c.Key, c.Reason)
			fields(c.Diff, "      ")
			for _, k := range c.Detach {
				out.printf("      detaches %s while the network is replaced\n", k)
			}
			out.printf("\n")
		}
	}
	if len(drift) > 0 {
		out.printf("Drift: %d object(s) changed outside capstan:\n", len(drift))
		for _, d := range drift {
			if d.Reverted {
				out.printf("  %s: reverted by this plan\n", d.Change.Key)
				continue
			}
			out.printf("  %s: not reverted (selfHeal is off)\n", d.Change.Key)
			fields(d.Change.Diff, "      ")
		}
		out.printf("\n")
	}
	if len(p.Warnings) > 0 {
		out.printf("Warnings:\n")
		for _, wn := range p.Warnings {
			out.printf("  - %s\n", wn)
		}
		out.printf("\n")
	}
	out.printf("%s\n", summaryLine(p.Summary()))
	return out.err
}

// RenderMarkdown writes the plan as GitHub-flavoured Markdown for a pull-request
// comment: a summary line, a table of changes, then each change's field differences in
// a collapsed <details> block holding a ```diff listing.
func RenderMarkdown(w io.Writer, p Plan, _ ...RenderOptions) error {
	out := &errWriter{w: w}
	title := "### capstan plan"
	if p.Revision != "" {
		title += " for " + mdCode(p.Revision)
	}
	out.printf("%s\n\n", title)

	changes := visible(p)
	drift := driftEntries(p)
	if len(changes) == 0 {
		out.printf("**%s**\n", noChangesLine)
	} else {
		out.printf("**%s**\n\n", summaryLine(p.Summary()))
		out.printf("| | Object | Action | Reason |\n|:-:|---|---|---|\n")
		for _, c := range changes {
			out.printf("| %s | %s | %s | %s |\n", mdCode(string(c.Action)), mdCode(c.Key.String()), c.Action, c.Reason)
		}
		for _, c := range changes {
			if len(c.Diff) == 0 && len(c.Detach) == 0 {
				continue
			}
			out.printf("\n<details><summary><code>%c %s</code> (%s)</summary>\n\n", c.Action, html.EscapeString(c.Key.String()), c.Reason)
			lines := diffLines(c.Diff)
			for _, k := range c.Detach {
				lines = append(lines, "! detaches "+k.String()+" while the network is replaced")
			}
			writeFence(out, lines)
			out.printf("\n</details>\n")
		}
	}
	if len(drift) > 0 {
		out.printf("\n**Drift:** %d object(s) changed outside capstan.\n\n", len(drift))
		for _, d := range drift {
			if d.Reverted {
				out.printf("- %s: reverted by this plan\n", mdCode(d.Change.Key.String()))
			} else {
				out.printf("- %s: not reverted (selfHeal is off)\n", mdCode(d.Change.Key.String()))
			}
		}
		for _, d := range drift {
			if d.Reverted || len(d.Change.Diff) == 0 {
				continue
			}
			out.printf("\n<details><summary>drift of <code>%s</code></summary>\n\n", html.EscapeString(d.Change.Key.String()))
			writeFence(out, diffLines(d.Change.Diff))
			out.printf("\n</details>\n")
		}
	}
	if len(p.Warnings) > 0 {
		out.printf("\n**Warnings:**\n\n")
		for _, wn := range p.Warnings {
			out.printf("- %s\n", mdEscape(wn))
		}
	}
	return out.err
}

// diffLines renders field differences for a ```diff block, where a change is a "-" line
// followed by a "+" line so GitHub colours them.
func diffLines(diffs []FieldDiff) []string {
	var lines []string
	for _, d := range diffs {
		g, text := fieldLine(d)
		switch g {
		case '~':
			lines = append(lines, "- "+d.Path+": "+showValue(d.Before), "+ "+d.Path+": "+showValue(d.After))
		default:
			lines = append(lines, string(g)+" "+text)
		}
	}
	return lines
}

// writeFence writes lines in a ```diff block whose fence is longer than any backtick run
// inside, so no value can close it early.
func writeFence(out *errWriter, lines []string) {
	longest := 0
	for _, l := range lines {
		run := 0
		for _, r := range l {
			if r == '`' {
				run++
				longest = max(longest, run)
			} else {
				run = 0
			}
		}
	}
	fence := strings.Repeat("`", max(3, longest+1))
	out.printf("%sdiff\n%s\n%s\n", fence, strings.Join(lines, "\n"), fence)
}

// mdCode renders s as inline code, safe inside a table cell.
func mdCode(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	if strings.Contains(s, "`") {
		return "`` " + s + " ``"
	}
	return "`" + s + "`"
}

// mdEscape neutralizes characters that would turn text into markup or HTML.
func mdEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "`", "\\`", "*", `\*`, "_", `\_`, "<", "&lt;", ">", "&gt;", "|", `\|`, "[", `\[`, "]", `\]`)
	return r.Replace(s)
}

// The JSON document, field by field in docs/json-output.md.
type (
	jsonPlan struct {
		FormatVersion string       `json:"format_version"`
		Revision      string       `json:"revision"`
		HasChanges    bool         `json:"has_changes"`
		Summary       Summary      `json:"summary"`
		Changes       []jsonChange `json:"changes"`
		Drift         []jsonDrift  `json:"drift"`
		Warnings      []string     `json:"warnings"`
		StackOrder    []string     `json:"stack_order"`
	}
	jsonChange struct {
		Action string      `json:"action"`
		Key    string      `json:"key"`
		Sink   string      `json:"sink"`
		Kind   string      `json:"kind"`
		Name   string      `json:"name"`
		Stack  string      `json:"stack"`
		Reason Reason      `json:"reason"`
		Diff   []FieldDiff `json:"diff"`
		Detach []string    `json:"detach,omitempty"`
	}
	jsonDrift struct {
		Key      string      `json:"key"`
		Reverted bool        `json:"reverted"`
		Diff     []FieldDiff `json:"diff"`
	}
)

// RenderJSON writes the plan as one JSON document in a stable, versioned format
// (format_version "1", described in docs/json-output.md). Values are masked exactly as
// in the other renderers; no spec is written beyond its field differences.
func RenderJSON(w io.Writer, p Plan, _ ...RenderOptions) error {
	doc := jsonPlan{
		FormatVersion: JSONFormatVersion,
		Revision:      p.Revision,
		HasChanges:    p.HasChanges(),
		Summary:       p.Summary(),
		Changes:       []jsonChange{},
		Drift:         []jsonDrift{},
		Warnings:      append([]string{}, p.Warnings...),
		StackOrder:    append([]string{}, p.StackOrder...),
	}
	for _, c := range visible(p) {
		jc := jsonChange{
			Action: c.Action.String(), Key: c.Key.String(), Sink: c.Key.Sink, Kind: c.Key.Kind, Name: c.Key.Name,
			Stack: changeStack(c), Reason: c.Reason, Diff: append([]FieldDiff{}, c.Diff...),
		}
		for _, k := range c.Detach {
			jc.Detach = append(jc.Detach, k.String())
		}
		doc.Changes = append(doc.Changes, jc)
	}
	for _, d := range driftEntries(p) {
		doc.Drift = append(doc.Drift, jsonDrift{Key: d.Change.Key.String(), Reverted: d.Reverted, Diff: append([]FieldDiff{}, d.Change.Diff...)})
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("render plan as JSON: %w", err)
	}
	return nil
}
