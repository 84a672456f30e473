package daemon

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
	"strings"
	"time"
)

//go:embed templates/status.html
var templates embed.FS

var pageTemplate = template.Must(template.New("status.html").Funcs(template.FuncMap{
	"when": func(t *time.Time) string {
		if t == nil {
			return "never"
		}
		return t.Format("2006-01-02 15:04:05Z07:00")
	},
	"dur": func(d time.Duration) string {
		return d.Round(time.Millisecond).String()
	},
	"short": func(rev string) string {
		// main@sha1:0123456789abcdef... -> main@0123456789ab
		if ref, digest, ok := strings.Cut(rev, "@"); ok {
			if _, hex, ok := strings.Cut(digest, ":"); ok && len(hex) > 12 {
				return ref + "@" + hex[:12]
			}
		}
		return rev
	},
	"firstLine": func(s string) string {
		line, _, _ := strings.Cut(s, "\n")
		return truncate(line, 200)
	},
}).ParseFS(templates, "templates/status.html"))

// page renders the status page. It is rendered into a buffer first, so a template error
// is a 500, not half a page.
func (s *Server) page(w http.ResponseWriter, _ *http.Request) {
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, s.loop.Status()); err != nil {
		s.log.Error("status page", "error", err.Error())
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_, _ = buf.WriteTo(w)
}
