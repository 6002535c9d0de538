package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
	"github.com/otelcol-istio/otelcol-istio/e2e/meshsim"
)

// The simulator's senders deliver over both OTLP transports: every flush
// arrives as one request with one resource, and nothing is left buffered
// when a run ends.
func TestMeshsimSendsOverGRPCAndHTTP(t *testing.T) {
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			backend := harness.StartBackend(t)
			endpoint := backend.GRPCEndpoint()
			if protocol == "http" {
				endpoint = backend.HTTPEndpoint()
			}
			send, err := meshsim.NewSender(protocol, endpoint)
			if err != nil {
				t.Fatal(err)
			}
			defer send.Close()
			cfg := meshsim.DefaultConfig()
			cfg.NoTraceContext["productpage"] = true
			sim, err := meshsim.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			flushes := 0
			err = meshsim.Run(context.Background(), sim, send, meshsim.RunOptions{Rate: 20, Duration: 1500 * time.Millisecond,
				OnFlush: func(_ meshsim.Flush, err error) {
					if err != nil {
						t.Errorf("export: %v", err)
					}
					flushes++
				}})
			if err != nil {
				t.Fatal(err)
			}
			st := sim.Stats()
			if st.Requests < 20 || st.Spans == 0 || st.Orphans != 2*st.Requests {
				t.Fatalf("stats %+v: want about 30 page loads with 2 orphan roots each", st)
			}
			backend.WaitForSpans(st.Spans, 10*time.Second)
			reqs := backend.Requests()
			if len(reqs) != flushes || flushes != st.Flushes {
				t.Errorf("backend got %d requests, simulator made %d flushes (stats %d)", len(reqs), flushes, st.Flushes)
			}
			for _, r := range reqs {
				if r.Transport != protocol || r.Traces.ResourceSpans().Len() != 1 {
					t.Errorf("request over %s with %d resources, want %s with one", r.Transport, r.Traces.ResourceSpans().Len(), protocol)
				}
			}
		})
	}
}
