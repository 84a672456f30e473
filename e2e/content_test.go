//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// desired is what a commit to the test repository says; files renders it from the
// example's own files.
type desired struct {
	// Message is wordpress's $MESSAGE, which the test image prints in /license.txt.
	Message string
	// MysqlScale, when > 0, adds `scale: N` to mysql (the one-line scaling commit).
	MysqlScale int
	// MysqlRound, when > 0, sets $ROUND on mysql: an environment change that rolls mysql
	// without touching the routed service (the latency benchmark's commit).
	MysqlRound int
	// Scheduler, when set, replaces the listener's scheduler (a change only SLB sees).
	Scheduler string
	// Broken adds a key compose does not know, which fails validation.
	Broken bool
	// Removed deletes the stack and the route from the repository.
	Removed bool
	// Readme, when set, adds a README.md, a file capstan does not read.
	Readme string
}

func baseline() desired { return desired{Message: "first"} }

// files turns d into the repository's files: examples/wordpress adapted to this machine.
//
//   - stack.yaml and route.yaml name the suite's unique stack instead of "wordpress";
//   - wordpress publishes 80 in host mode on a fixed port: the routing mesh (ingress
//     mode) needs IPVS, which this kernel lacks, so only host-mode ports forward;
//   - the route's listener is on s.listenerPort (8080 unless something holds it);
//   - images are the test image under capstan-e2e/ names;
//   - wordpress.dab is left out: with the Stack document renamed, a bare wordpress.dab
//     would be a second stack called "wordpress".
func (s *suite) files(d desired) map[string]string {
	if d.Removed {
		return map[string]string{"README.md": "The WordPress stack was removed.\n"}
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(s.root, "examples", "wordpress", name))
		if err != nil {
			panic(err) // the checkout is broken, not the test
		}
		return string(b)
	}
	stack := mustReplace(read("stack.yaml"), "name: wordpress\n", "name: "+s.stack+"\n")

	route := mustReplace(read("route.yaml"), "{stack: wordpress,", "{stack: "+s.stack+",")
	route = mustReplace(route, "port: 8080\n", "port: "+strconv.Itoa(s.listenerPort)+"\n")
	if d.Scheduler != "" {
		route = mustReplace(route, "scheduler: wrr\n", "scheduler: "+d.Scheduler+"\n")
	}

	compose := read("docker-compose.yml")
	compose = mustReplace(compose, "image: wordpress:4.5.3\n", "image: "+wordpressImage+"\n")
	compose = mustReplace(compose, "image: mysql:5.7.13\n", "image: "+mysqlImage+"\n")
	compose = mustReplace(compose, "      - WORDPRESS_DB_PASSWORD=password\n",
		"      - WORDPRESS_DB_PASSWORD=password\n      - MESSAGE="+d.Message+"\n")
	compose = mustReplace(compose, "    ports:\n      - \"80\"\n",
		fmt.Sprintf("    ports:\n      - target: 80\n        published: %d\n        protocol: tcp\n        mode: host\n", s.publishedPort))
	mysql := "      - MYSQL_ROOT_PASSWORD=password\n"
	if d.MysqlRound > 0 {
		mysql += fmt.Sprintf("      - ROUND=%d\n", d.MysqlRound)
	}
	mysql += "    restart: always\n"
	if d.MysqlScale > 0 {
		mysql += fmt.Sprintf("    scale: %d\n", d.MysqlScale)
	}
	if d.Broken {
		mysql += "    scale_typo: 6\n"
	}
	compose = mustReplace(compose, "      - MYSQL_ROOT_PASSWORD=password\n    restart: always\n", mysql)
	files := map[string]string{
		"stack.yaml":         stack,
		"route.yaml":         route,
		"docker-compose.yml": compose,
	}
	if d.Readme != "" {
		files["README.md"] = d.Readme
	}
	return files
}

// mustReplace replaces old, which must occur exactly once: an edit to the example that
// moves it should fail here, loudly, not produce a quietly different scenario.
func mustReplace(s, old, new string) string {
	if n := strings.Count(s, old); n != 1 {
		panic(fmt.Sprintf("examples/wordpress changed: %q occurs %d times, want once", old, n))
	}
	return strings.Replace(s, old, new, 1)
}
