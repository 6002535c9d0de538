package orphans

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

// readTags may stop early only when nothing else can be needed: an empty
// node_id counts as missing, so the scan must go on to upstream_cluster.
func TestReadTagsEarlyStop(t *testing.T) {
	m := pcommon.NewMap()
	m.PutStr("node_id", "")
	m.PutStr("guid:x-request-id", "r")
	m.PutStr("upstream_cluster", "outbound|80||x")
	m.PutStr("istio.canonical_service", "x")
	tags := readTags(m, false, true)
	assert.Equal(t, "outbound|80||x", tags.upstreamCluster.str())
	assert.Equal(t, "x", tags.canonical.str())

	m.PutStr("node_id", "sidecar~1~x.ns~ns.svc.cluster.local")
	tags = readTags(m, false, true)
	assert.Equal(t, "r", tags.requestID.str())
	assert.False(t, tags.canonical.ok, "stopped once node_id and the request id were found")

	tags = readTags(m, true, true)
	assert.Equal(t, "x", tags.canonical.str(), "full scan for origins")
}
