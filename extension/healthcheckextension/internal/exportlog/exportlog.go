// Package exportlog receives the collector's own logs over OTLP/HTTP and keeps,
// per exporter, the class of the last export error.
//
// exporterhelper logs every failed attempt ("Exporting failed. Will retry the
// request after interval." and "Exporting failed. Rejecting data.") with the
// error, while its metrics only count a failure once retries give up. The
// collector can send its logs to an OTLP endpoint
// (service::telemetry::logs::processors), so a loopback listener here sees the
// error of a backend that is down within seconds. Only the class is kept.
package exportlog // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/exportlog"

import (
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/errclass"
)

// Attribute keys the collector puts on its component loggers
// (go.opentelemetry.io/collector/internal/telemetry); the otelzap bridge
// turns zap.Error into exception.message.
const (
	attrComponentKind = "otelcol.component.kind"
	attrComponentID   = "otelcol.component.id"
	attrException     = "exception.message"
	attrError         = "error"
)

// Error is the last classified export error of one exporter.
type Error struct {
	Class string
	Code  string
	At    time.Time
}

// Store keeps the last error per exporter id. It is safe for concurrent use.
type Store struct {
	mu      sync.Mutex
	last    map[string]Error
	now     func() time.Time
	handler http.Handler
}

// NewStore returns an empty Store.
func NewStore() *Store {
	s := &Store{last: map[string]Error{}, now: time.Now}
	s.handler = s.newHandler()
	return s
}

// Last returns the last error of exporter id.
func (s *Store) Last(id string) (Error, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.last[id]
	return e, ok
}

// Consume classifies the export errors in ld.
func (s *Store) Consume(ld plog.Logs) {
	now := s.now()
	for _, rl := range ld.ResourceLogs().All() {
		for _, sl := range rl.ScopeLogs().All() {
			scopeAttrs := sl.Scope().Attributes()
			for _, lr := range sl.LogRecords().All() {
				if lookup(scopeAttrs, lr.Attributes(), attrComponentKind) != "exporter" {
					continue
				}
				id := lookup(scopeAttrs, lr.Attributes(), attrComponentID)
				text := get(lr.Attributes(), attrException)
				if text == "" {
					text = get(lr.Attributes(), attrError)
				}
				if id == "" || text == "" {
					continue
				}
				class, code := errclass.Classify(text)
				s.record(id, Error{Class: class, Code: code, At: now})
			}
		}
	}
}

func (s *Store) record(id string, e Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.last[id]; ok && prev.At.After(e.At) {
		return
	}
	s.last[id] = e
}

// lookup prefers the record's attribute and falls back to the scope's: the
// collector puts component attributes on the scope, other bridges on the record.
func lookup(scope, record pcommon.Map, key string) string {
	if v := get(record, key); v != "" {
		return v
	}
	return get(scope, key)
}

func get(m pcommon.Map, key string) string {
	if v, ok := m.Get(key); ok {
		return v.AsString()
	}
	return ""
}

// maxBody bounds one OTLP request; the collector's log batches are small.
const maxBody = 4 << 20

// Handler serves POST /v1/logs (OTLP/HTTP, protobuf or JSON, optionally gzip).
func (s *Store) Handler() http.Handler {
	return s.handler
}

func (s *Store) newHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/logs", func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = http.MaxBytesReader(w, r.Body, maxBody)
		if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
			gz, err := gzip.NewReader(body)
			if err != nil {
				http.Error(w, "bad gzip body", http.StatusBadRequest)
				return
			}
			defer gz.Close()
			body = io.LimitReader(gz, maxBody)
		}
		raw, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		req := plogotlp.NewExportRequest()
		isJSON := strings.HasPrefix(r.Header.Get("Content-Type"), "application/json")
		if isJSON {
			err = req.UnmarshalJSON(raw)
		} else {
			err = req.UnmarshalProto(raw)
		}
		if err != nil {
			http.Error(w, "cannot decode OTLP logs", http.StatusBadRequest)
			return
		}
		s.Consume(req.Logs())
		resp := plogotlp.NewExportResponse()
		var out []byte
		if isJSON {
			w.Header().Set("Content-Type", "application/json")
			out, _ = resp.MarshalJSON()
		} else {
			w.Header().Set("Content-Type", "application/x-protobuf")
			out, _ = resp.MarshalProto()
		}
		_, _ = w.Write(out)
	})
	return mux
}
