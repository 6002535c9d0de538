package healthcheckextension // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension"

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"

	"go.opentelemetry.io/collector/confmap"
)

// defaultMetricsURL is where the collector serves its own metrics when
// service::telemetry::metrics does not say otherwise (otelconftelemetry's
// default pull reader on localhost:8888).
const defaultMetricsURL = "http://localhost:8888/metrics"

// collectorView is what the extension learns from the effective collector
// configuration: where the collector's own metrics are, and which receivers
// feed which traces exporter.
type collectorView struct {
	metricsURL string
	metricsErr error
	// exporters are the exporter ids of traces pipelines, sorted.
	exporters []string
	// receivers maps an exporter id to the receivers that feed it, through
	// connectors too. nil means unknown: count all receivers.
	receivers map[string][]string
	// observers maps an exporter id to the extensions it names under
	// auth::authenticator and middlewares: the candidates that report its
	// attempts (backend_auth). The rule that maps attempts to exporters.
	observers map[string][]string
}

// sharedObservers returns the observers named by more than one traces
// exporter, with those exporters.
func (v collectorView) sharedObservers() map[string][]string {
	users := map[string][]string{}
	for _, exp := range v.exporters {
		for _, obs := range v.observers[exp] {
			users[obs] = append(users[obs], exp)
		}
	}
	for obs, exps := range users {
		if len(exps) < 2 {
			delete(users, obs)
		}
	}
	return users
}

func (v collectorView) receiversOf(exporter string) []string {
	return v.receivers[exporter] // nil for a nil map or an unknown exporter
}

func parseCollectorConfig(conf *confmap.Conf) collectorView {
	if conf == nil {
		return collectorView{metricsURL: defaultMetricsURL}
	}
	m := conf.ToStringMap()
	service, _ := m["service"].(map[string]any)
	v := collectorView{}
	v.metricsURL, v.metricsErr = metricsURL(service)
	v.exporters, v.receivers = tracesTopology(service, m["connectors"])
	v.observers = exporterObservers(m["exporters"])
	return v
}

func metricsURL(service map[string]any) (string, error) {
	telemetry, _ := service["telemetry"].(map[string]any)
	metrics, _ := telemetry["metrics"].(map[string]any)
	if metrics == nil {
		return defaultMetricsURL, nil
	}
	if lvl, _ := metrics["level"].(string); strings.EqualFold(lvl, "none") {
		return "", errors.New("service::telemetry::metrics::level is none, so the collector records no exporter metrics")
	}
	rawReaders, set := metrics["readers"]
	if !set || rawReaders == nil {
		return defaultMetricsURL, nil
	}
	readers, _ := rawReaders.([]any)
	for _, r := range readers {
		reader, _ := r.(map[string]any)
		pull, _ := reader["pull"].(map[string]any)
		exporter, _ := pull["exporter"].(map[string]any)
		prom, ok := exporter["prometheus"].(map[string]any)
		if !ok {
			continue
		}
		host := fmt.Sprint(valueOr(prom["host"], "localhost"))
		port := fmt.Sprint(valueOr(prom["port"], 9464))
		switch host {
		case "", "0.0.0.0":
			host = "localhost"
		case "::", "[::]":
			host = "::1"
		}
		return "http://" + net.JoinHostPort(strings.Trim(host, "[]"), port) + "/metrics", nil
	}
	return "", errors.New("service::telemetry::metrics::readers has no pull Prometheus reader")
}

// exporterObservers reads, for every exporter, the extension ids under
// auth::authenticator and middlewares[].id, in that order, without duplicates.
func exporterObservers(exporters any) map[string][]string {
	all, _ := exporters.(map[string]any)
	out := map[string][]string{}
	for id, raw := range all {
		cfg, _ := raw.(map[string]any)
		var ids []string
		if auth, _ := cfg["auth"].(map[string]any); auth != nil {
			if a, ok := auth["authenticator"].(string); ok && a != "" {
				ids = append(ids, a)
			}
		}
		mws, _ := cfg["middlewares"].([]any)
		for _, mw := range mws {
			m, _ := mw.(map[string]any)
			if mid, ok := m["id"].(string); ok && mid != "" && !slices.Contains(ids, mid) {
				ids = append(ids, mid)
			}
		}
		if len(ids) > 0 {
			out[id] = ids
		}
	}
	return out
}

func valueOr(v, def any) any {
	if v == nil {
		return def
	}
	return v
}

// tracesTopology returns the exporters of traces pipelines and, for each, the
// receivers whose spans reach it, following connectors between pipelines.
func tracesTopology(service map[string]any, connectors any) ([]string, map[string][]string) {
	pipelines, _ := service["pipelines"].(map[string]any)
	if pipelines == nil {
		return nil, nil
	}
	conns, _ := connectors.(map[string]any)
	isConnector := func(id string) bool { _, ok := conns[id]; return ok }

	// feeds[x] are the direct inputs (receivers or connectors) of pipelines that export to x.
	feeds := map[string]map[string]bool{}
	exporters := map[string]bool{}
	for pid, raw := range pipelines {
		p, _ := raw.(map[string]any)
		ins, outs := strings2(p["receivers"]), strings2(p["exporters"])
		for _, out := range outs {
			if feeds[out] == nil {
				feeds[out] = map[string]bool{}
			}
			for _, in := range ins {
				feeds[out][in] = true
			}
			if isTraces(pid) && !isConnector(out) {
				exporters[out] = true
			}
		}
	}
	result := map[string][]string{}
	for exp := range exporters {
		seen := map[string]bool{}
		recv := []string{}
		var walk func(id string)
		walk = func(id string) {
			for in := range feeds[id] {
				if seen[in] {
					continue
				}
				seen[in] = true
				if isConnector(in) {
					walk(in)
				} else {
					recv = append(recv, in)
				}
			}
		}
		walk(exp)
		sort.Strings(recv)
		result[exp] = recv
	}
	return slices.Sorted(maps.Keys(exporters)), result
}

func isTraces(pipelineID string) bool {
	t, _, _ := strings.Cut(pipelineID, "/")
	return t == "traces"
}

func strings2(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
