package groupcommitprocessor

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

func TestItemsOf(t *testing.T) {
	assert.Zero(t, itemsOf(ptrace.NewTraces()))

	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()                       // 1
	rs.Resource().Attributes().PutStr("service.name", "reviews") // 1
	ss := rs.ScopeSpans().AppendEmpty()                          // 1
	ss.Scope().Attributes().PutInt("scope.attr", 1)              // 1
	span := ss.Spans().AppendEmpty()                             // 1
	span.Attributes().PutStr("a", "x")                           // 1
	nested := span.Attributes().PutEmptyMap("m")                 // 1
	nested.PutStr("k", "v")                                      // 1
	list := nested.PutEmptySlice("list")                         // 1
	list.AppendEmpty().SetStr("x")                               // 1
	list.AppendEmpty().SetEmptyMap().PutBool("deep", true)       // 1 + 1
	ev := span.Events().AppendEmpty()                            // 1
	ev.Attributes().PutStr("e", "1")                             // 1
	link := span.Links().AppendEmpty()                           // 1
	link.Attributes().PutStr("l", "1")                           // 1
	link.Attributes().PutStr("l2", "2")                          // 1
	ss.Spans().AppendEmpty()                                     // 1
	assert.Equal(t, 18, itemsOf(td))
}

// BenchmarkItemsOf counts an Envoy-sized export: 5 spans of 25 string
// tags. Every request that waits for a write pays it, beside TracesSize.
func BenchmarkItemsOf(b *testing.B) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "reviews.bookinfo")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	for range 5 {
		attrs := spans.AppendEmpty().Attributes()
		for i := range 25 {
			attrs.PutStr("tag."+strconv.Itoa(i), "value")
		}
	}
	var sizer ptrace.ProtoMarshaler
	b.Run("items", func(b *testing.B) {
		for b.Loop() {
			itemsOf(td)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(5*b.N), "ns/span")
	})
	b.Run("traces_size", func(b *testing.B) {
		for b.Loop() {
			sizer.TracesSize(td)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(5*b.N), "ns/span")
	})
}
