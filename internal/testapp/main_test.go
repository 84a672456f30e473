package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestHandler(t *testing.T) {
	t.Setenv("MESSAGE", "hello from the test")
	srv := httptest.NewServer(handler())
	defer srv.Close()
	host, _ := os.Hostname()

	tests := []struct {
		path     string
		code     int
		contains []string
	}{
		{"/license.txt", 200, []string{licenseText, "message: hello from the test\n", "hostname: " + host + "\n"}},
		{"/healthz", 200, []string{"ok\n"}},
		{"/env", 200, []string{"MESSAGE=hello from the test\n"}},
		{"/nope", 404, nil},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			code, body := get(t, srv.URL+tt.path)
			if code != tt.code {
				t.Fatalf("GET %s: status %d, want %d", tt.path, code, tt.code)
			}
			for _, want := range tt.contains {
				if !strings.Contains(body, want) {
					t.Errorf("GET %s: body %q lacks %q", tt.path, body, want)
				}
			}
		})
	}
}

func TestHealthcheck(t *testing.T) {
	ok := httptest.NewServer(handler())
	defer ok.Close()
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"2xx", []string{ok.URL + "/healthz"}, 0},
		{"404", []string{ok.URL + "/missing"}, 1},
		{"unreachable", []string{"http://127.0.0.1:1/healthz"}, 1},
		{"no url", nil, 2},
		{"two urls", []string{"a", "b"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			if got := healthcheck(tt.args, &stderr); got != tt.want {
				t.Errorf("healthcheck(%q) = %d, want %d (stderr %q)", tt.args, got, tt.want, stderr.String())
			}
		})
	}
}

func TestListenPorts(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"default", nil, []string{"80"}},
		{"PORT", map[string]string{"PORT": "8080"}, []string{"8080"}},
		{"mysql stand-in", map[string]string{"MYSQL_ROOT_PASSWORD": "x"}, []string{"80", "3306"}},
		{"extra ports, deduplicated", map[string]string{"PORT": "81", "LISTEN_ALSO": "82, 81,,83"}, []string{"81", "82", "83"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"PORT", "LISTEN_ALSO", "MYSQL_ROOT_PASSWORD"} {
				t.Setenv(k, "")
				os.Unsetenv(k)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			if diff := cmp.Diff(tt.want, listenPorts()); diff != "" {
				t.Errorf("listenPorts() (-want +got):\n%s", diff)
			}
		})
	}
}
