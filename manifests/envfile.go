package manifests

import (
	"regexp"
	"strconv"

	"github.com/compose-spec/compose-go/v2/dotenv"
)

var envLineError = regexp.MustCompile(`^line (\d+): (.*)$`)

// parseEnvFile reads a Stack's env file with the same dotenv rules `docker compose`
// applies to .env files. ${VAR} references inside it resolve against what is already
// known (earlier env files), never against the process environment.
func parseEnvFile(rel, abs string, known map[string]string) (map[string]string, Problems) {
	data, err := readCapped(abs)
	if err != nil {
		return nil, Problems{errorAt(rel, 0, "%v", err)}
	}
	if why := binaryReason(data); why != "" {
		return nil, Problems{errorAt(rel, 0, "not a text file (%s); an env file holds NAME=value lines", why)}
	}
	lookup := func(name string) (string, bool) {
		v, ok := known[name]
		return v, ok
	}
	vars, err := dotenv.UnmarshalBytesWithLookup(data, lookup)
	if err != nil {
		line, msg := 0, err.Error()
		if m := envLineError.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		return nil, Problems{errorAt(rel, line, "env file: %s", msg)}
	}
	return vars, nil
}
