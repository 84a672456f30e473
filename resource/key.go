package resource

import (
	"fmt"
	"strings"
)

// Sinks and kinds used in Keys.
const (
	SinkSwarm = "swarm"
	SinkSLB   = "slb"

	KindNetwork      = "network"
	KindSecret       = "secret"
	KindConfig       = "config"
	KindService      = "service"
	KindVServerGroup = "vservergroup"
	KindListener     = "listener"
)

// Key names one object a sink manages: "swarm/service/wordpress_wordpress",
// "slb/listener/lb-2zexxxx:8080/http". The name may itself contain slashes.
type Key struct {
	Sink string
	Kind string
	Name string
}

// ServiceKey, NetworkKey, SecretKey and ConfigKey build Swarm keys.
func ServiceKey(name string) Key { return Key{SinkSwarm, KindService, name} }

// NetworkKey names a Swarm network.
func NetworkKey(name string) Key { return Key{SinkSwarm, KindNetwork, name} }

// SecretKey names a Swarm secret.
func SecretKey(name string) Key { return Key{SinkSwarm, KindSecret, name} }

// ConfigKey names a Swarm config.
func ConfigKey(name string) Key { return Key{SinkSwarm, KindConfig, name} }

// String renders the key as sink/kind/name; ParseKey reverses it.
func (k Key) String() string { return k.Sink + "/" + k.Kind + "/" + k.Name }

// IsZero reports whether k is the zero Key.
func (k Key) IsZero() bool { return k == Key{} }

// ParseKey parses the form produced by Key.String.
func ParseKey(s string) (Key, error) {
	sink, rest, ok := strings.Cut(s, "/")
	if !ok || sink == "" {
		return Key{}, fmt.Errorf("parse key %q: want sink/kind/name", s)
	}
	kind, name, ok := strings.Cut(rest, "/")
	if !ok || kind == "" || name == "" {
		return Key{}, fmt.Errorf("parse key %q: want sink/kind/name", s)
	}
	return Key{Sink: sink, Kind: kind, Name: name}, nil
}

// Less orders keys by sink, kind, then name.
func (k Key) Less(o Key) bool {
	if k.Sink != o.Sink {
		return k.Sink < o.Sink
	}
	if k.Kind != o.Kind {
		return k.Kind < o.Kind
	}
	return k.Name < o.Name
}
