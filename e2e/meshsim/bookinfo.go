package meshsim

import (
	"crypto/sha1" //nolint:gosec // for a made-up commit id, see envoyVersion
	"encoding/hex"
	"fmt"
	"time"
)

// workload is one Bookinfo Deployment with one pod, and so one proxy.
type workload struct {
	app        string // the app label, which is also the canonical name
	deployment string
	version    string // the version label; "" gives Istio's "latest"
	namespace  string
	ip         string
	pod        string
	container  string // the app container, for service.instance.id
	gateway    bool
	// userAgent is what the app's HTTP client sends when it does not
	// forward the incoming user-agent.
	userAgent string
	// responseSize is the body size its inbound route answers with.
	responseSize string
}

// The Bookinfo pods. IPs, pod names and sizes are those of the shared
// fixtures; reviews-v1 and -v3 are made up alike.
var (
	gatewayWL = &workload{app: "istio-ingressgateway", deployment: "istio-ingressgateway", namespace: "istio-system",
		ip: "10.244.0.14", pod: "istio-ingressgateway-6b8f4d7c9d-q2x7v", container: "istio-proxy", gateway: true,
		responseSize: "5294"}
	productpageWL = &workload{app: "productpage", deployment: "productpage-v1", version: "v1", namespace: "default",
		ip: "10.244.0.25", pod: "productpage-v1-54bb874995-7xk2m", container: "productpage",
		userAgent: "python-requests/2.32.3", responseSize: "5294"}
	detailsWL = &workload{app: "details", deployment: "details-v1", version: "v1", namespace: "default",
		ip: "10.244.0.21", pod: "details-v1-65cfcf56f9-d8n2p", container: "details", responseSize: "178"}
	reviewsWL = [3]*workload{
		{app: "reviews", deployment: "reviews-v1", version: "v1", namespace: "default",
			ip: "10.244.0.24", pod: "reviews-v1-598b896c9d-kh4vq", container: "reviews",
			userAgent: "Apache-CXF/3.5.5", responseSize: "295"},
		{app: "reviews", deployment: "reviews-v2", version: "v2", namespace: "default",
			ip: "10.244.0.23", pod: "reviews-v2-64776cb9bd-vw4kc", container: "reviews",
			userAgent: "Apache-CXF/3.5.5", responseSize: "442"},
		{app: "reviews", deployment: "reviews-v3", version: "v3", namespace: "default",
			ip: "10.244.0.26", pod: "reviews-v3-5b9b8c7c6f-2gq8n", container: "reviews",
			userAgent: "Apache-CXF/3.5.5", responseSize: "442"},
	}
	ratingsWL = &workload{app: "ratings", deployment: "ratings-v1", version: "v1", namespace: "default",
		ip: "10.244.0.22", pod: "ratings-v1-5d5bf9d7d8-jx9rl", container: "ratings", responseSize: "48"}
)

// Fixed request facts: the client behind the ingress, its load-balancer
// address (the Host header), and Bookinfo's image tag.
const (
	clientIP        = "10.244.0.1"
	ingressHost     = "172.18.255.200"
	clientUserAgent = "curl/8.5.0"
	bookinfoImage   = "1.20.3"
	servicePort     = "9080"
	meshID          = "cluster.local"
	clusterID       = "Kubernetes"
)

func (w *workload) fqdn() string { return w.app + "." + w.namespace + ".svc.cluster.local" }

func (w *workload) revision() string {
	if w.version == "" {
		return "latest"
	}
	return w.version
}

// nodeID is the proxy's xDS node id: sidecar~ or router~, pod IP, pod.ns, domain.
func (w *workload) nodeID() string {
	kind := "sidecar"
	if w.gateway {
		kind = "router"
	}
	return kind + "~" + w.ip + "~" + w.pod + "." + w.namespace + "~" + w.namespace + ".svc.cluster.local"
}

// serviceName is the resource's service.name, as getServiceCluster (or
// otelServiceName for OTEL_SEMANTIC_CONVENTIONS) computes it for Bookinfo's
// labels (app, version): istio-tracing.md §6.5.
func (w *workload) serviceName(m Mode) string {
	switch m {
	case CanonicalNameOnly:
		return w.app
	case OTelSemanticConventions:
		return w.deployment
	default: // APP_LABEL_AND_NAMESPACE, CANONICAL_NAME_AND_NAMESPACE
		return w.app + "." + w.namespace
	}
}

// envoyVersion is Envoy::VersionInfo::version() of the proxy that ships with
// an Istio minor. 1.25 and 1.29 are the fixtures' strings; the others follow
// the same pattern with a stand-in commit hash.
func envoyVersion(minor int) string {
	switch minor {
	case 25:
		return "4382ac5fc1d362094bbba33283dbe60a3e1cef88/1.33.1-dev/Clean/RELEASE/BoringSSL"
	case 29:
		return "af30be60b7c35f2aceaea1b7382c7fbf12aa5e67/1.37.2-dev/Clean/RELEASE/BoringSSL"
	}
	envoy := fmt.Sprintf("1.%d.0-dev", minor+8)
	// Envoy prints its git commit (a SHA-1) before the version; this only
	// makes one up of the right shape.
	sum := sha1.Sum([]byte(envoy)) //nolint:gosec // a made-up commit id, not a security use
	return hex.EncodeToString(sum[:]) + "/" + envoy + "/Clean/RELEASE/BoringSSL"
}

// durations of one Bookinfo request, drawn per request. The nesting is
// fixed: each SERVER span sits inside its caller's CLIENT span.
type durations struct {
	ratingsServer, detailsServer, reviewsServer, productpageWork time.Duration
}

func (s *Sim) drawDurations(callsRatings bool) durations {
	ms := func(lo, hi float64) time.Duration {
		return time.Duration((lo + s.rng.Float64()*(hi-lo)) * float64(time.Millisecond))
	}
	d := durations{
		detailsServer:   ms(0.8, 2.5),
		reviewsServer:   ms(1.5, 4),
		productpageWork: ms(2, 8),
	}
	if callsRatings {
		d.ratingsServer = ms(0.6, 2)
	}
	return d
}

// Gaps between a CLIENT span and the SERVER span it causes (the network and
// the two proxies), and before the first outbound call.
const (
	hopGap   = 200 * time.Microsecond
	firstGap = time.Millisecond
)
