package collectorconfig

import (
	"reflect"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestExpand(t *testing.T) {
	env := map[string]string{"MY_POD_IP": "10.0.0.1", "EMPTY": ""}
	for _, c := range []struct {
		in, want string
		missing  []string
	}{
		{"${env:MY_POD_IP}:4317", "10.0.0.1:4317", nil},
		{"${env:MY_POD_IP:-localhost}:4317", "10.0.0.1:4317", nil},
		{"${env:UNSET:-localhost}:4317", "localhost:4317", nil},
		{"${env:UNSET:-}", "", nil},
		// As the collector's env provider: a set but empty variable wins over the default.
		{"${env:EMPTY:-default}", "", nil},
		{"${env:UNSET}", "", []string{"UNSET"}},
		{"${UNSET_TOO} and ${env:UNSET_TOO}", " and ", []string{"UNSET_TOO"}},
		{"no references", "no references", nil},
		// Nested, innermost first, as the collector's resolver.
		{"[${env:UNSET:-${env:MY_POD_IP:-localhost}}]:13133", "[10.0.0.1]:13133", nil},
		{"[${env:EMPTY:-${env:MY_POD_IP:-localhost}}]:13133", "[]:13133", nil},
		{"[${env:UNSET:-${env:UNSET2:-localhost}}]:13133", "[localhost]:13133", nil},
		{"${env:UNSET:-a$b}", "a$b", nil},
	} {
		got, missing := Expand(c.in, env)
		if got != c.want || !reflect.DeepEqual(missing, c.missing) {
			t.Errorf("Expand(%q) = %q, %v; want %q, %v", c.in, got, missing, c.want, c.missing)
		}
	}
}

const sample = `
extensions:
  health_check:
    endpoint: ${env:MY_POD_IP:-localhost}:13133
    path: /health
  health_check/unused:
    endpoint: localhost:1
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ${env:MY_POD_IP:-localhost}:14317
      http:
processors:
  memory_limiter:
    limit_percentage: 80
    spike_limit_percentage: 25
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter]
      exporters: [debug]
`

func TestPortsAndHealthCheck(t *testing.T) {
	cfg, err := Parse(sample, map[string]string{"MY_POD_IP": "10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ports, err := cfg.OTLPReceiverPorts()
	if err != nil {
		t.Fatal(err)
	}
	want := []ReceiverPort{
		{Receiver: "otlp", Protocol: "grpc", Endpoint: "10.0.0.1:14317", Port: 14317},
		{Receiver: "otlp", Protocol: "http", Port: 4318}, // the receiver's default
	}
	if !reflect.DeepEqual(ports, want) {
		t.Errorf("ports %+v, want %+v", ports, want)
	}
	hc, err := cfg.HealthCheck()
	if err != nil {
		t.Fatal(err)
	}
	if hc != (HealthCheck{Endpoint: "10.0.0.1:13133", Port: 13133, Path: "/health"}) {
		t.Errorf("health check %+v: want the one enabled in service::extensions", hc)
	}
}

func TestMemoryLimiter(t *testing.T) {
	const gib = 1 << 30
	cfg, err := Parse(sample, nil)
	if err != nil {
		t.Fatal(err)
	}
	ml, err := cfg.MemoryLimiter(gib)
	if err != nil {
		t.Fatal(err)
	}
	if ml.Hard != gib*80/100 || ml.Soft != gib*80/100-gib*25/100 {
		t.Errorf("percentages: hard %d soft %d", ml.Hard, ml.Soft)
	}
	mib, err := Parse("processors:\n  memory_limiter:\n    limit_mib: 800\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	ml, err = mib.MemoryLimiter(gib)
	if err != nil {
		t.Fatal(err)
	}
	// spike_limit_mib unset: 20% of the limit, as the collector defaults it.
	if ml.Hard != 800<<20 || ml.Soft != 640<<20 {
		t.Errorf("limit_mib: hard %d soft %d", ml.Hard, ml.Soft)
	}
	if _, err := Parse("processors:\n  batch:\n", nil); err != nil {
		t.Fatal(err)
	}
	none, _ := Parse("processors:\n  batch:\n", nil)
	if _, err := none.MemoryLimiter(gib); err == nil {
		t.Error("no memory_limiter: want an error")
	}
}

func TestDuplicateKeysFail(t *testing.T) {
	if _, err := Parse("exporters:\n  otlp:\n    endpoint: a\n    endpoint: b\n", nil); err == nil {
		t.Error("a duplicate key must fail, as it does in the collector")
	}
}

// FuzzExpand: any text and environment value expand without panicking,
// and end, references to themselves included.
func FuzzExpand(f *testing.F) {
	f.Add("[${env:A:-${env:B:-localhost}}]:13133", "x${env:A}")
	f.Add("${env:A:-${env:A:-${env:A}}}", "${env:A}")
	f.Add("${", "}")
	f.Fuzz(func(_ *testing.T, text, value string) {
		_, _ = Expand(text, map[string]string{"A": value, "B": ""})
	})
}
