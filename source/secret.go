package source

import (
	"bytes"
	"fmt"
	"os"
)

// ReadSecret reads a secret the way every capstan secret flag works: from the file named
// by the flag (file, from --flagName), else from the environment variable env, else from
// the file named by env+"_FILE" (the Docker secrets convention:
// CAPSTAN_GIT_PASSWORD_FILE=/run/secrets/git-token). It returns nil when none is set.
// Setting both env and env_FILE is an error rather than a silent preference. Messages
// name the flag, variable or path, never the content.
func ReadSecret(flagName, file, env string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", flagName, err)
		}
		return b, nil
	}
	val, hasVal := os.LookupEnv(env)
	path, hasPath := os.LookupEnv(env + "_FILE")
	switch {
	case hasVal && hasPath:
		return nil, fmt.Errorf("both %s and %s_FILE are set; set only one", env, env)
	case hasVal:
		return []byte(val), nil
	case hasPath:
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s_FILE: %w", env, err)
		}
		return b, nil
	}
	return nil, nil
}

// ReadSecretText is ReadSecret for passwords, tokens and passphrases: one trailing line
// break (which editors and `echo` add to files) is removed.
func ReadSecretText(flagName, file, env string) (string, error) {
	b, err := ReadSecret(flagName, file, env)
	if err != nil {
		return "", err
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	return string(b), nil
}
