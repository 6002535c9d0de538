package deploy

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// The alert rules and the dashboard of deploy/observability. Their metric
// names are listed in metrics.txt, which the e2e test TestObservabilityMetrics
// checks against what the running binary exports after traffic: a metric
// renamed upstream or by us breaks the build, not the on-call night.
const observabilityDir = "observability"

// prometheusOwnMetrics are series that Prometheus itself makes, not the
// collector: they are not in metrics.txt.
var prometheusOwnMetrics = []string{"up"}

var promql = parser.NewParser(parser.Options{})

// readObservabilityFile reads a file of deploy/observability.
func readObservabilityFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(observabilityDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseRules(t *testing.T, content []byte, what string) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.Parse(content, false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("%s: %v", what, err)
	}
	if groups == nil || len(groups.Groups) == 0 {
		t.Fatalf("%s: no rule groups", what)
	}
	return groups
}

// TestAlertRulesParse: the plain rules file is what Prometheus loads (rulefmt
// validates every expression as PromQL and every template), each alert has a
// severity, a summary and a runbook line, and the PrometheusRule carries the
// same groups.
func TestAlertRulesParse(t *testing.T) {
	plain := parseRules(t, readObservabilityFile(t, "rules.yaml"), "rules.yaml")
	for _, g := range plain.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a recording rule %q; this file holds alerts only", g.Name, r.Record)
				continue
			}
			for _, key := range []string{"summary", "runbook"} {
				if strings.TrimSpace(r.Annotations[key]) == "" {
					t.Errorf("alert %s has no %s annotation", r.Alert, key)
				}
			}
			if r.Labels["severity"] == "" {
				t.Errorf("alert %s has no severity label", r.Alert)
			}
		}
	}

	var crd struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Metadata   map[string]any `json:"metadata"`
		Spec       map[string]any `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(readObservabilityFile(t, "prometheusrule.yaml"), &crd); err != nil {
		t.Fatalf("prometheusrule.yaml: %v", err)
	}
	if crd.APIVersion != "monitoring.coreos.com/v1" || crd.Kind != "PrometheusRule" {
		t.Errorf("prometheusrule.yaml is %s %s, want monitoring.coreos.com/v1 PrometheusRule", crd.APIVersion, crd.Kind)
	}
	if ns := crd.Metadata["namespace"]; ns != "otelcol-istio" {
		t.Errorf("prometheusrule.yaml's namespace is %v, want the collector's, otelcol-istio", ns)
	}
	spec, err := yaml.Marshal(crd.Spec)
	if err != nil {
		t.Fatal(err)
	}
	operator := parseRules(t, spec, "prometheusrule.yaml spec")
	if !reflect.DeepEqual(plain.Groups, operator.Groups) {
		t.Error("prometheusrule.yaml's groups differ from rules.yaml's: copy rules.yaml's groups under spec")
	}
}

// dashboardExprs returns every PromQL expression of the Grafana dashboard,
// with Grafana's $__rate_interval given a value so that PromQL can parse it.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(readObservabilityFile(t, "dashboard.json"), &dash); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	if dash.Title == "" || len(dash.Panels) == 0 {
		t.Fatal("dashboard.json has no title or no panels")
	}
	exprs := map[string]string{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for i, target := range p.Targets {
			exprs[p.Title+"#"+string(rune('A'+i))] = strings.ReplaceAll(target.Expr, "$__rate_interval", "5m")
		}
	}
	return exprs
}

// metricNames returns the metric names an expression selects.
func metricNames(t *testing.T, what, expr string) []string {
	t.Helper()
	node, err := promql.ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: not valid PromQL: %v\n%s", what, err, expr)
		return nil
	}
	var names []string
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			if vs.Name == "" {
				t.Errorf("%s: a selector without a metric name: %s", what, vs)
			}
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

// TestObservabilityMetricList: every dashboard query is valid PromQL, and
// metrics.txt lists exactly the collector metrics that the rules and the
// dashboard use (the e2e test reads that list).
func TestObservabilityMetricList(t *testing.T) {
	used := map[string]bool{}
	for what, expr := range dashboardExprs(t) {
		for _, n := range metricNames(t, "dashboard "+what, expr) {
			used[n] = true
		}
	}
	rules := parseRules(t, readObservabilityFile(t, "rules.yaml"), "rules.yaml")
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, n := range metricNames(t, "alert "+r.Alert, r.Expr) {
				used[n] = true
			}
		}
	}
	var want []string
	for n := range used {
		if !slices.Contains(prometheusOwnMetrics, n) {
			want = append(want, n)
		}
	}
	slices.Sort(want)

	listPath := filepath.Join(observabilityDir, "metrics.txt")
	listBytes, _ := os.ReadFile(listPath) // missing: listed stays empty, and the test says what to write
	var listed []string
	for _, line := range strings.Split(string(listBytes), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			listed = append(listed, line)
		}
	}
	if !slices.Equal(listed, want) {
		if os.Getenv("UPDATE_METRICS_LIST") != "" {
			body := "# Collector metrics used by rules.yaml and dashboard.json (written by\n" +
				"# UPDATE_METRICS_LIST=1 go test -run TestObservabilityMetricList in deploy/).\n" +
				"# The e2e test TestObservabilityMetrics checks that the binary exports each.\n" +
				strings.Join(want, "\n") + "\n"
			if err := os.WriteFile(listPath, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("%s lists %v; the rules and the dashboard use %v (UPDATE_METRICS_LIST=1 rewrites it)", listPath, listed, want)
	}
}
