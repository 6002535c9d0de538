// Package collectorconfig reads the parts of a collector config that the
// Kubernetes and Istio manifests must agree with: receiver ports, the
// health_check endpoint, memory_limiter, exporter timeouts and queue storage.
// It expands ${env:NAME} and ${env:NAME:-default} the way the collector's env
// provider does, from the environment the pod would give it.
package collectorconfig

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// envRef matches ${env:NAME}, ${env:NAME:-default} and ${NAME} whose
// default holds no reference itself: the innermost ones.
var envRef = regexp.MustCompile(`\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-((?:[^}$]|\$[^{}])*))?\}`)

// Expand substitutes environment references. Unset variables without a
// default become empty, as in the collector; they are returned in missing.
// A default may hold a reference (${env:A:-${env:B:-x}}): as the collector's
// resolver, the innermost is expanded first.
func Expand(text string, env map[string]string) (expanded string, missing []string) {
	seen := map[string]bool{}
	expanded = text
	// One pass per level of nesting; the bounds stop a value that holds a
	// reference to itself (A="x${env:A}") from growing forever.
	for range maxNesting {
		if len(expanded) > maxExpanded {
			break
		}
		next := expandOnce(expanded, env, seen, &missing)
		if next == expanded {
			break
		}
		expanded = next
	}
	sort.Strings(missing)
	return expanded, missing
}

// maxNesting bounds the levels of references Expand resolves, and
// maxExpanded the text it expands further.
const (
	maxNesting  = 10
	maxExpanded = 64 << 10
)

func expandOnce(text string, env map[string]string, seen map[string]bool, missing *[]string) string {
	return envRef.ReplaceAllStringFunc(text, func(m string) string {
		sub := envRef.FindStringSubmatch(m)
		name, def := sub[1], sub[2]
		hasDefault := strings.Contains(m, ":-")
		// As the env provider: the default applies only when the variable is unset.
		if v, ok := env[name]; ok {
			return v
		}
		if hasDefault {
			return def
		}
		if !seen[name] {
			seen[name] = true
			*missing = append(*missing, name)
		}
		return ""
	})
}

// Config is a parsed collector config.
type Config struct {
	Raw map[string]any
}

// Parse expands env references with env and parses the YAML.
func Parse(text string, env map[string]string) (*Config, error) {
	expanded, _ := Expand(text, env)
	return ParseRaw(expanded)
}

// ParseRaw parses the YAML without expanding anything, to look at the
// config as written (for example, whether a header value is a literal).
func ParseRaw(text string) (*Config, error) {
	var raw map[string]any
	// Strict: a duplicate key is an error, as in the collector (yaml.v3).
	if err := yaml.UnmarshalStrict([]byte(text), &raw); err != nil {
		return nil, fmt.Errorf("collector config: %w", err)
	}
	return &Config{Raw: raw}, nil
}

// Component is one configured component: its id ("otlp_grpc/backend"), its
// type ("otlp_grpc") and its settings.
type Component struct {
	ID       string
	Type     string
	Settings map[string]any
}

// Components returns the components of a section ("receivers", "exporters",
// "extensions", "processors", "connectors"), sorted by id.
func (c *Config) Components(section string) []Component {
	m, _ := c.Raw[section].(map[string]any)
	var out []Component
	for id, v := range m {
		settings, _ := v.(map[string]any)
		typ, _, _ := strings.Cut(id, "/")
		out = append(out, Component{ID: id, Type: typ, Settings: settings})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// OfType returns the components of a section whose type is one of types.
func (c *Config) OfType(section string, types ...string) []Component {
	var out []Component
	for _, comp := range c.Components(section) {
		for _, t := range types {
			if comp.Type == t {
				out = append(out, comp)
			}
		}
	}
	return out
}

// Get walks nested maps by keys.
func Get(m map[string]any, keys ...string) (any, bool) {
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = mm[k]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

// GetString is Get for a string value.
func GetString(m map[string]any, keys ...string) string {
	v, _ := Get(m, keys...)
	s, _ := v.(string)
	return s
}

// EndpointPort returns the port of a host:port endpoint.
func EndpointPort(endpoint string) (int32, error) {
	_, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		return 0, fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	p, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("endpoint %q: port: %w", endpoint, err)
	}
	return int32(p), nil
}

// ReceiverPort is one OTLP receiver protocol and where it listens.
type ReceiverPort struct {
	Receiver string // receiver id
	Protocol string // grpc or http
	Endpoint string
	Port     int32
}

// defaultOTLPPorts are the otlp receiver's defaults when a protocol has no endpoint.
var defaultOTLPPorts = map[string]int32{"grpc": 4317, "http": 4318}

// OTLPReceiverPorts returns the port of every protocol of every otlp receiver.
func (c *Config) OTLPReceiverPorts() ([]ReceiverPort, error) {
	var out []ReceiverPort
	for _, r := range c.OfType("receivers", "otlp") {
		protocols, _ := r.Settings["protocols"].(map[string]any)
		for _, proto := range []string{"grpc", "http"} {
			p, ok := protocols[proto]
			if !ok {
				continue
			}
			settings, _ := p.(map[string]any)
			endpoint, _ := settings["endpoint"].(string)
			port := defaultOTLPPorts[proto]
			if endpoint != "" {
				var err error
				if port, err = EndpointPort(endpoint); err != nil {
					return nil, fmt.Errorf("receivers::%s::protocols::%s: %w", r.ID, proto, err)
				}
			}
			out = append(out, ReceiverPort{Receiver: r.ID, Protocol: proto, Endpoint: endpoint, Port: port})
		}
	}
	return out, nil
}

// HealthCheck is where the health_check extension answers probes.
type HealthCheck struct {
	Endpoint string
	Port     int32
	Path     string
}

// HealthCheck returns the first health_check extension enabled in service::extensions.
func (c *Config) HealthCheck() (HealthCheck, error) {
	enabled := c.ServiceList("extensions")
	for _, e := range c.OfType("extensions", "health_check") {
		if !slices.Contains(enabled, e.ID) {
			continue
		}
		hc := HealthCheck{Endpoint: "localhost:13133", Port: 13133, Path: "/"}
		if ep, _ := e.Settings["endpoint"].(string); ep != "" {
			hc.Endpoint = ep
			p, err := EndpointPort(ep)
			if err != nil {
				return hc, fmt.Errorf("extensions::%s::endpoint: %w", e.ID, err)
			}
			hc.Port = p
		}
		if path, _ := e.Settings["path"].(string); path != "" {
			hc.Path = path
		}
		return hc, nil
	}
	return HealthCheck{}, errors.New("no health_check extension in service::extensions")
}

// ServiceList returns service::<key> (for example the enabled extensions).
func (c *Config) ServiceList(key string) []string {
	v, _ := Get(c.Raw, "service", key)
	return toStrings(v)
}

// Pipeline is one pipeline's processors and exporters.
type Pipeline struct {
	Receivers, Processors, Exporters []string
}

// Pipelines returns service::pipelines.
func (c *Config) Pipelines() map[string]Pipeline {
	m, _ := Get(c.Raw, "service", "pipelines")
	pm, _ := m.(map[string]any)
	out := map[string]Pipeline{}
	for name, v := range pm {
		p, _ := v.(map[string]any)
		out[name] = Pipeline{
			Receivers:  toStrings(p["receivers"]),
			Processors: toStrings(p["processors"]),
			Exporters:  toStrings(p["exporters"]),
		}
	}
	return out
}

// MemoryLimit is the memory_limiter's hard and soft limits for a given
// container memory limit, in bytes.
type MemoryLimit struct {
	ID         string
	Hard, Soft int64
}

// MemoryLimiter resolves the memory_limiter settings against a container
// memory limit (limit_percentage is relative to it, as in the collector,
// which reads the cgroup limit).
func (c *Config) MemoryLimiter(containerLimit int64) (MemoryLimit, error) {
	ml := c.OfType("processors", "memory_limiter")
	if len(ml) == 0 {
		return MemoryLimit{}, errors.New("no memory_limiter processor")
	}
	s := ml[0].Settings
	const mib = 1 << 20
	num := func(k string) int64 {
		switch v := s[k].(type) {
		case float64:
			return int64(v)
		case string:
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
		return 0
	}
	var hard, spike int64
	switch {
	case num("limit_mib") > 0:
		hard = num("limit_mib") * mib
		spike = num("spike_limit_mib") * mib
		if spike == 0 {
			spike = hard / 5 // the collector's default: 20% of the limit
		}
	case num("limit_percentage") > 0:
		hard = containerLimit * num("limit_percentage") / 100
		spike = containerLimit * num("spike_limit_percentage") / 100
	default:
		return MemoryLimit{}, fmt.Errorf("processors::%s: neither limit_mib nor limit_percentage set", ml[0].ID)
	}
	return MemoryLimit{ID: ml[0].ID, Hard: hard, Soft: hard - spike}, nil
}

// Duration reads a duration setting, with a default when absent.
func Duration(settings map[string]any, key string, def time.Duration) (time.Duration, error) {
	v, ok := settings[key]
	if !ok {
		return def, nil
	}
	s, _ := v.(string)
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", key, err)
	}
	return d, nil
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
