package healthcheckextension // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension"

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// sourceTimeout bounds how long /status waits for all registered sources.
const sourceTimeout = time.Second

// reservedKeys are the /status keys the extension writes itself.
var reservedKeys = map[string]bool{"status": true, "components": true, "exporters": true, "delivery": true}

// statusSource is one registered source. busy stops a slow source from piling
// up goroutines: while a call is running, later requests report it as busy.
type statusSource struct {
	fn   func() any
	busy atomic.Bool
}

// statusSources holds the sources registered through RegisterStatusSource.
type statusSources struct {
	logger   *zap.Logger
	mu       sync.Mutex
	byName   map[string]*statusSource
	inflight sync.WaitGroup
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

type sourceResult struct {
	name string
	raw  json.RawMessage
}

// collect calls every source concurrently and returns their JSON by name.
// A source that panics, fails to marshal or does not answer within
// sourceTimeout is reported as {"error": "..."} instead.
func (s *statusSources) collect(ctx context.Context) map[string]json.RawMessage {
	s.mu.Lock()
	srcs := make(map[string]*statusSource, len(s.byName))
	for name, src := range s.byName {
		srcs[name] = src
	}
	s.mu.Unlock()

	out := make(map[string]json.RawMessage, len(srcs))
	results := make(chan sourceResult, len(srcs))
	pending := map[string]bool{}
	for name, src := range srcs {
		if !src.busy.CompareAndSwap(false, true) {
			out[name] = errorJSON("status source is still answering a previous request")
			continue
		}
		pending[name] = true
		s.inflight.Add(1)
		go func() {
			defer s.inflight.Done()
			defer src.busy.Store(false)
			results <- sourceResult{name: name, raw: call(src.fn)}
		}()
	}
	timer := time.NewTimer(sourceTimeout)
	defer timer.Stop()
	for len(pending) > 0 {
		select {
		case r := <-results:
			out[r.name] = r.raw
			delete(pending, r.name)
		case <-timer.C:
			for name := range pending {
				out[name] = errorJSON(fmt.Sprintf("status source did not answer within %s", sourceTimeout))
			}
			return out
		case <-ctx.Done():
			for name := range pending {
				out[name] = errorJSON("request cancelled")
			}
			return out
		}
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

// wait lets sources still running finish, so Shutdown leaves no goroutine of
// ours behind when the sources are well behaved. It gives up after
// sourceTimeout or ctx: a stuck source must not stall the collector's shutdown.
func (s *statusSources) wait(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		s.inflight.Wait()
		close(done)
	}()
	timer := time.NewTimer(sourceTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
	case <-ctx.Done():
	}
}
