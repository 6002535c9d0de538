// Package meshsim simulates the Envoy proxies of an Istio Bookinfo mesh and
// produces their spans exactly as they reach a collector: one ResourceSpans
// per proxy flush, every attribute a string, Envoy's span names and kinds,
// and new traces wherever an application does not forward traceparent.
// The facts it follows are in shared/docs/istio-tracing.md; the tests check
// its output against the shared fixtures.
package meshsim

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Mode is a proxy's ProxyConfig.tracingServiceName, plus Istio 1.30's
// serviceAttributeEnrichment OTEL_SEMANTIC_CONVENTIONS, which decides the
// resource's service.name (istio-tracing.md §6).
type Mode string

// The tracingServiceName modes the simulator knows.
const (
	AppLabelAndNamespace      Mode = "APP_LABEL_AND_NAMESPACE"
	CanonicalNameOnly         Mode = "CANONICAL_NAME_ONLY"
	CanonicalNameAndNamespace Mode = "CANONICAL_NAME_AND_NAMESPACE"
	OTelSemanticConventions   Mode = "OTEL_SEMANTIC_CONVENTIONS"
)

// Modes lists every Mode, in the order the docs give them.
var Modes = []Mode{AppLabelAndNamespace, CanonicalNameOnly, CanonicalNameAndNamespace, OTelSemanticConventions}

// Apps are the Bookinfo applications a knob can name. "istio-ingressgateway"
// is the gateway; "reviews" covers reviews-v1, -v2 and -v3.
var Apps = []string{"istio-ingressgateway", "productpage", "details", "reviews", "ratings"}

// Config holds the simulator's knobs. The zero value is not valid; start
// from DefaultConfig.
type Config struct {
	// IstioVersion is "1.MINOR" (1.19 to 1.31). It decides the wire shape:
	// <1.21 no istio.cluster_id; <1.23 span names "ingress"/"egress <host>";
	// <1.24 upstream_cluster.name without the trailing ";"; >=1.25 the
	// telemetry.sdk.* resource attributes and the "envoy" scope.
	IstioVersion string
	// DefaultMode is every proxy's tracingServiceName unless Modes says otherwise.
	DefaultMode Mode
	// Modes overrides DefaultMode per app (see Apps).
	Modes map[string]Mode
	// NoTraceContext names the apps that do not forward traceparent and
	// tracestate (nor user-agent): their outbound calls start new traces.
	NoTraceContext map[string]bool
	// NoRequestID names the apps that do not forward x-request-id: their
	// outbound sidecar generates a new one.
	NoRequestID map[string]bool
	// SpawnUpstreamSpan turns on the gateway's spawn_upstream_span (Istio
	// >=1.26 with the Telemetry API): a SERVER span plus a router CLIENT child.
	SpawnUpstreamSpan bool
	// ReviewsVersion pins the reviews version every request goes to ("v1",
	// "v2" or "v3", as a VirtualService would); "" spreads them evenly, as
	// Bookinfo's default round-robin does. Only v2 and v3 call ratings.
	ReviewsVersion string
	// SamplingPercent is the proxies' randomSamplingPercentage (0 to 100).
	SamplingPercent float64
	// AppSDKSpans adds productpage's own OpenTelemetry SDK span per request,
	// in its own resource: spans that are not Istio's.
	AppSDKSpans bool
	// MinFlushSpans and FlushInterval are Envoy's flush triggers
	// (tracing.opentelemetry.min_flush_spans, flush_interval_ms).
	MinFlushSpans int
	FlushInterval time.Duration
	// Seed makes ids, timings and sampling reproducible.
	Seed uint64
}

// DefaultConfig is a correctly propagating Bookinfo on Istio 1.25 with
// default names, sampling everything, flushing as Envoy does by default.
func DefaultConfig() Config {
	return Config{
		IstioVersion:    "1.25",
		DefaultMode:     AppLabelAndNamespace,
		Modes:           map[string]Mode{},
		NoTraceContext:  map[string]bool{},
		NoRequestID:     map[string]bool{},
		SamplingPercent: 100,
		MinFlushSpans:   5,
		FlushInterval:   5 * time.Second,
		Seed:            1,
	}
}

// ModeOf returns the mode of an app's proxies.
func (c Config) ModeOf(app string) Mode {
	if m, ok := c.Modes[app]; ok {
		return m
	}
	return c.DefaultMode
}

// minor returns the Istio minor version; Validate has checked it parses.
func (c Config) minor() int {
	m, _ := parseIstioVersion(c.IstioVersion)
	return m
}

func parseIstioVersion(v string) (int, error) {
	rest, ok := strings.CutPrefix(v, "1.")
	if !ok {
		return 0, fmt.Errorf("istio version must look like 1.25, got %q", v)
	}
	m, err := strconv.Atoi(rest)
	if err != nil || m < 19 || m > 31 {
		return 0, fmt.Errorf("istio version must be 1.19 to 1.31, got %q", v)
	}
	return m, nil
}

func isApp(name string) bool {
	for _, a := range Apps {
		if a == name {
			return true
		}
	}
	return false
}

func validMode(m Mode) bool {
	for _, x := range Modes {
		if x == m {
			return true
		}
	}
	return false
}

// Validate names the bad knob and the allowed values.
func (c Config) Validate() error {
	var errs []error
	minor, err := parseIstioVersion(c.IstioVersion)
	if err != nil {
		errs = append(errs, err)
	}
	allowed := fmt.Sprint(Modes)
	check := func(where string, m Mode) {
		if !validMode(m) {
			errs = append(errs, fmt.Errorf("%s: mode %q is not one of %s", where, m, allowed))
		} else if m == OTelSemanticConventions && err == nil && minor < 30 {
			errs = append(errs, fmt.Errorf("%s: %s needs Istio 1.30 or later, not %s", where, m, c.IstioVersion))
		}
	}
	check("default mode", c.DefaultMode)
	for _, app := range sortedKeys(c.Modes) {
		if !isApp(app) {
			errs = append(errs, fmt.Errorf("mode for %q: unknown app, want one of %v", app, Apps))
			continue
		}
		check("mode for "+app, c.Modes[app])
	}
	for what, set := range map[string]map[string]bool{"no-traceparent": c.NoTraceContext, "no-request-id": c.NoRequestID} {
		for _, app := range sortedKeys(set) {
			if !isApp(app) {
				errs = append(errs, fmt.Errorf("%s %q: unknown app, want one of %v", what, app, Apps))
			}
		}
	}
	if c.SpawnUpstreamSpan && err == nil && minor < 26 {
		errs = append(errs, fmt.Errorf("spawn_upstream_span needs Istio 1.26 or later, not %s", c.IstioVersion))
	}
	switch c.ReviewsVersion {
	case "", "v1", "v2", "v3":
	default:
		errs = append(errs, fmt.Errorf("reviews version %q is not one of v1, v2, v3 or empty", c.ReviewsVersion))
	}
	if c.SamplingPercent < 0 || c.SamplingPercent > 100 {
		errs = append(errs, fmt.Errorf("sampling percent must be 0 to 100, got %v", c.SamplingPercent))
	}
	if c.MinFlushSpans < 1 {
		errs = append(errs, fmt.Errorf("min flush spans must be at least 1, got %d", c.MinFlushSpans))
	}
	if c.FlushInterval <= 0 {
		errs = append(errs, fmt.Errorf("flush interval must be > 0, got %s", c.FlushInterval))
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ParseModes reads "app=MODE,app=MODE" (the command line form).
func ParseModes(s string) (map[string]Mode, error) {
	out := map[string]Mode{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		app, mode, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, fmt.Errorf("mode %q: want app=MODE", kv)
		}
		out[app] = Mode(mode)
	}
	return out, nil
}

// ParseApps reads "app,app" into a set (the command line form).
func ParseApps(s string) map[string]bool {
	out := map[string]bool{}
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out[a] = true
		}
	}
	return out
}
