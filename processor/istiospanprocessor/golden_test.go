package istiospanprocessor

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/ptracetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/istio"
	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/metadata"
)

var update = flag.Bool("update", false, "regenerate the golden files in testdata/expected")

// runProcessor sends td through a real istio_span processor into a sink and
// returns what came out.
func runProcessor(t testing.TB, cfg *Config, td ptrace.Traces) ptrace.Traces {
	t.Helper()
	sink := new(consumertest.TracesSink)
	p, err := NewFactory().CreateTraces(context.Background(), processortest.NewNopSettings(metadata.Type), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, p.ConsumeTraces(context.Background(), td))
	require.NoError(t, p.Shutdown(context.Background()))
	require.Len(t, sink.AllTraces(), 1)
	return sink.AllTraces()[0]
}

func readInput(t testing.TB, name string) ptrace.Traces {
	t.Helper()
	td, err := golden.ReadTraces(filepath.Join("testdata", "input", name))
	require.NoError(t, err)
	return td
}

func inputs(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "input", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = filepath.Base(f)
	}
	return names
}

// TestGolden runs every fixture through every format and compares with
// testdata/expected/<fixture>/<format>.yaml. Run with -update to regenerate,
// then review the diff. The output is also checked against properties that do
// not depend on the golden files.
func TestGolden(t *testing.T) {
	type variant struct {
		format  Format
		semconv bool
	}
	variants := []variant{
		{FormatAppLabelAndNamespace, true},
		{FormatCanonicalNameOnly, true},
		{FormatCanonicalNameAndNamespace, true},
		{FormatPreserve, true},
		{FormatCanonicalNameAndNamespace, false},
	}
	for _, in := range inputs(t) {
		for _, v := range variants {
			file := string(v.format) + ".yaml"
			if !v.semconv {
				file = string(v.format) + "-no-semconv.yaml"
			}
			expectedPath := filepath.Join("testdata", "expected", strings.TrimSuffix(in, ".json"), file)
			t.Run(strings.TrimSuffix(in, ".json")+"/"+strings.TrimSuffix(file, ".yaml"), func(t *testing.T) {
				cfg := &Config{ServiceName: ServiceNameConfig{Format: v.format, SemconvAttributes: v.semconv}}
				input := readInput(t, in)
				out := runProcessor(t, cfg, readInput(t, in))

				if *update {
					require.NoError(t, os.MkdirAll(filepath.Dir(expectedPath), 0o755))
					require.NoError(t, golden.WriteTracesToFile(expectedPath, out))
					t.Logf("wrote %s", expectedPath)
				}
				expected, err := golden.ReadTraces(expectedPath)
				require.NoError(t, err)
				require.NoError(t, ptracetest.CompareTraces(expected, out))

				checkInvariants(t, input, out, v.format)

				// Idempotent: a second pass changes nothing.
				again := ptrace.NewTraces()
				out.CopyTo(again)
				require.NoError(t, ptracetest.CompareTraces(out, runProcessor(t, cfg, again)))
			})
		}
	}
}

// checkInvariants asserts what must hold for any input, independently of the
// golden files: nothing dropped or changed inside spans, each resource holds
// one workload named by the format's rule, and resources without Istio spans
// are byte-for-byte what came in.
func checkInvariants(t *testing.T, in, out ptrace.Traces, format Format) {
	t.Helper()
	// Every span arrives exactly once, unchanged.
	inSpans, outSpans := spansByID(in), spansByID(out)
	require.Len(t, outSpans, len(inSpans))
	for id, s := range inSpans {
		o, ok := outSpans[id]
		require.True(t, ok, "span %s dropped", id)
		require.NoError(t, ptracetest.CompareSpan(s, o))
	}

	rss := out.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		var ids []istio.Identity
		forEachSpan(rss.At(i), func(s ptrace.Span) {
			if id, st := istio.IdentityOf(s.Attributes()); st == istio.Proxy {
				ids = append(ids, id)
			}
		})
		if len(ids) == 0 {
			continue
		}
		for _, id := range ids[1:] {
			require.Equal(t, ids[0].CanonicalService, id.CanonicalService, "one workload per resource")
			require.Equal(t, ids[0].Namespace, id.Namespace, "one workload per resource")
		}
		name, ok := rss.At(i).Resource().Attributes().Get("service.name")
		if !ok || name.Type() != pcommon.ValueTypeStr {
			continue // odd input: left alone, checked by its golden file
		}
		c, ns := ids[0].CanonicalService, ids[0].Namespace
		switch format {
		case FormatCanonicalNameOnly:
			assert.Equal(t, c, name.Str())
		case FormatCanonicalNameAndNamespace:
			assert.Equal(t, c+"."+ns, name.Str())
		case FormatAppLabelAndNamespace:
			assert.True(t, strings.HasSuffix(name.Str(), "."+ns) && len(name.Str()) > len(ns)+1, name.Str())
		}
	}

	// Resources with no Istio proxy span are untouched, byte for byte. Split
	// resources are appended, so untouched ones keep their index.
	inRss := in.ResourceSpans()
	for i := 0; i < inRss.Len(); i++ {
		hasProxy := false
		forEachSpan(inRss.At(i), func(s ptrace.Span) {
			if _, st := istio.IdentityOf(s.Attributes()); st == istio.Proxy {
				hasProxy = true
			}
		})
		if !hasProxy {
			assert.Equal(t, marshalResource(t, inRss.At(i)), marshalResource(t, rss.At(i)), "resource %d changed", i)
		}
	}
}

func forEachSpan(rs ptrace.ResourceSpans, f func(ptrace.Span)) {
	for j := 0; j < rs.ScopeSpans().Len(); j++ {
		spans := rs.ScopeSpans().At(j).Spans()
		for k := 0; k < spans.Len(); k++ {
			f(spans.At(k))
		}
	}
}

func spansByID(td ptrace.Traces) map[string]ptrace.Span {
	m := map[string]ptrace.Span{}
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		forEachSpan(td.ResourceSpans().At(i), func(s ptrace.Span) {
			key := s.TraceID().String() + "/" + s.SpanID().String()
			// The odd-input fixture reuses one span, told apart by test.case.
			if tc, ok := s.Attributes().Get("test.case"); ok {
				key += "/" + tc.Str()
			}
			m[key] = s
		})
	}
	return m
}

// marshalResource returns the OTLP protobuf bytes of one ResourceSpans.
func marshalResource(t *testing.T, rs ptrace.ResourceSpans) []byte {
	t.Helper()
	td := ptrace.NewTraces()
	rs.CopyTo(td.ResourceSpans().AppendEmpty())
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	require.NoError(t, err)
	return b
}
