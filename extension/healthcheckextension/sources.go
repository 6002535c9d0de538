package healthcheckextension // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension"

import (
	"encoding/json"
	"sync"

	"go.uber.org/zap"
)

// reservedKeys are the /status keys the extension writes itself.
var reservedKeys = map[string]bool{"status": true, "components": true, "exporters": true, "delivery": true}

// statusSource is one registered source: a function returning an in-memory
// snapshot, called on the request's goroutine.
type statusSource struct {
	fn func() any
}

// statusSources holds the sources registered through RegisterStatusSource.
type statusSources struct {
	logger *zap.Logger
	mu     sync.Mutex
	byName map[string]*statusSource
}

func newStatusSources(logger *zap.Logger) *statusSources {
	return &statusSources{logger: logger, byName: map[string]*statusSource{}}
}

func (s *statusSources) register(name string, fn func() any) func() {
	if name == "" || reservedKeys[name] || fn == nil {
		s.logger.Warn("health_check ignores a status source with an empty or reserved name or no function",
			zap.String("name", name))
		return func() {}
	}
	src := &statusSource{fn: fn}
	s.mu.Lock()
	s.byName[name] = src
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			// A later registration under the same name replaced this one; keep it.
			if s.byName[name] == src {
				delete(s.byName, name)
			}
		})
	}
}

// collect calls every source in turn and returns their JSON by name. Sources
// are in-memory snapshots (see RegisterStatusSource), so each answer carries
// every source's report; a source that panics or fails to marshal is
// reported as {"error": "..."} instead.
func (s *statusSources) collect() map[string]json.RawMessage {
	s.mu.Lock()
	srcs := make(map[string]*statusSource, len(s.byName))
	for name, src := range s.byName {
		srcs[name] = src
	}
	s.mu.Unlock()
	out := make(map[string]json.RawMessage, len(srcs))
	for name, src := range srcs {
		out[name] = call(src.fn)
	}
	return out
}

// call runs fn and marshals its result, turning a panic into an error value.
func call(fn func() any) (raw json.RawMessage) {
	defer func() {
		if r := recover(); r != nil {
			raw = errorJSON("status source panicked")
		}
	}()
	b, err := json.Marshal(fn())
	if err != nil {
		return errorJSON("status source result is not JSON: " + err.Error())
	}
	return b
}

func errorJSON(msg string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"error": msg})
	return b
}
