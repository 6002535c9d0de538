package meshsim

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"strconv"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// ids hands out Envoy-style ids from one seeded source, so a run is
// reproducible: random 128-bit trace ids, random 64-bit span ids (Envoy never
// sets flags) and UUIDv4 x-request-ids.
type ids struct{ rng *rand.Rand }

func newIDs(seed uint64) *ids {
	return &ids{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (g *ids) traceID() pcommon.TraceID {
	var t pcommon.TraceID
	binary.BigEndian.PutUint64(t[:8], g.rng.Uint64())
	binary.BigEndian.PutUint64(t[8:], g.rng.Uint64()|1) // never the invalid all-zero id
	return t
}

func (g *ids) spanID() pcommon.SpanID {
	var s pcommon.SpanID
	binary.BigEndian.PutUint64(s[:], g.rng.Uint64()|1)
	return s
}

// UUID char 14 (the version nibble of a v4 UUID) carries Envoy's trace
// decision when useRequestIdForTraceSampling is on, which Istio sets
// (source/extensions/request_id/uuid/config.cc).
const (
	uuidStatusIndex = 14
	traceNoTrace    = '4'
	traceSampled    = '9'
)

// requestID returns a fresh x-request-id as Envoy generates it: a random
// UUIDv4, whose char 14 is '4' (no trace decision yet).
func (g *ids) requestID() []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], g.rng.Uint64())
	binary.BigEndian.PutUint64(b[8:], g.rng.Uint64())
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	out := make([]byte, 36)
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return out
}

// decideSampling applies Envoy's HCM decision to a request id, in place, as
// ConnectionManagerUtility::mutateTracingRequestHeader does: an id already
// marked sampled stays sampled; otherwise the request is sampled when the
// id's first 8 hex digits mod 10000 fall under the sampling percentage
// (UUIDRequestIDExtension::modBy), and char 14 becomes '9'. The decision
// depends only on the id, so every proxy that sees the same id with the same
// percentage agrees: a forwarded x-request-id keeps sampling consistent,
// a fresh one is sampled on its own.
func decideSampling(rid []byte, percent float64) bool {
	if rid[uuidStatusIndex] == traceSampled || rid[uuidStatusIndex] == 'a' || rid[uuidStatusIndex] == 'b' {
		return true
	}
	v, err := strconv.ParseUint(string(rid[:8]), 16, 32)
	if err != nil {
		return false
	}
	if float64(v%10000) < percent*100 {
		rid[uuidStatusIndex] = traceSampled
		return true
	}
	return false
}
