package istio

import "go.opentelemetry.io/collector/pdata/pcommon"

// TagStatus says whether a span carries a usable Istio workload identity.
type TagStatus int

const (
	// NotProxy: neither istio.canonical_service nor istio.namespace is
	// present, as on spans from application SDKs.
	NotProxy TagStatus = iota
	// Malformed: at least one of the two tags is present, but they are not
	// both non-empty strings that are valid Kubernetes names. Istio never
	// sends this, so it is odd input to be left alone.
	Malformed
	// Proxy: both tags are present and valid; the span came from an Istio
	// proxy (sidecar, gateway, waypoint, or a gateway's router child span).
	Proxy
)

// Identity is the workload an Istio proxy span belongs to, as Istio itself
// tags it on every span.
type Identity struct {
	// CanonicalService is istio.canonical_service (C).
	CanonicalService string
	// Namespace is istio.namespace (N).
	Namespace string
	// CanonicalRevision is istio.canonical_revision when it is a valid label
	// value, else "". It is "latest" when the pod has no version label.
	CanonicalRevision string
}

// IdentityOf reads a span's Istio identity. It never allocates: the returned
// strings share memory with the span's attributes.
func IdentityOf(attrs pcommon.Map) (Identity, TagStatus) {
	return IdentityOfLike(attrs, Identity{})
}

// IdentityOfLike is IdentityOf for a span that probably has identity known,
// an identity IdentityOf returned with status Proxy (or the zero Identity):
// values equal to known's are not validated again. All spans of one proxy
// flush carry the same tags, so only a flush's first span pays for the
// character-by-character checks.
func IdentityOfLike(attrs pcommon.Map, known Identity) (Identity, TagStatus) {
	// A Get per tag, not one pass with a switch over attrs.All(): Get's loop
	// is tighter than pdata's iterator, so three Gets over Envoy's ~20 tags
	// cost less than one iteration (measured: ~45 vs ~80 ns).
	cv, hasC := attrs.Get(AttrCanonicalService)
	nv, hasN := attrs.Get(AttrNamespace)
	if !hasC && !hasN {
		return Identity{}, NotProxy
	}
	if !hasC || !hasN || cv.Type() != pcommon.ValueTypeStr || nv.Type() != pcommon.ValueTypeStr {
		return Identity{}, Malformed
	}
	id := Identity{CanonicalService: cv.Str(), Namespace: nv.Str()}
	if !sameNonEmpty(id.CanonicalService, known.CanonicalService) && !ValidCanonicalName(id.CanonicalService) ||
		!sameNonEmpty(id.Namespace, known.Namespace) && !ValidNamespace(id.Namespace) {
		return Identity{}, Malformed
	}
	if rev, ok := StringAttr(attrs, AttrCanonicalRevision); ok && (sameNonEmpty(rev, known.CanonicalRevision) || ValidLabelValue(rev)) {
		id.CanonicalRevision = rev
	}
	return id, Proxy
}

// sameNonEmpty reports whether s equals an already validated value v.
func sameNonEmpty(s, v string) bool { return v != "" && s == v }

// maxLabelValue is Kubernetes' limit for label values and DNS-1123 labels.
// Canonical names and revisions are pod label values; namespaces are labels.
const maxLabelValue = 63

// ValidLabelValue reports whether s is a non-empty Kubernetes label value:
// at most 63 of [A-Za-z0-9-_.], starting and ending alphanumeric.
func ValidLabelValue(s string) bool {
	if s == "" || len(s) > maxLabelValue || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// ValidCanonicalName reports whether s can be istio.canonical_service: a label
// value without empty dot-separated parts ("a..b", ".a"). Such names are legal
// label values but would make C.N ambiguous, so they are treated as odd input.
func ValidCanonicalName(s string) bool {
	if !ValidLabelValue(s) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] == '.' && !isAlnum(s[i-1]) {
			return false
		}
		if s[i-1] == '.' && !isAlnum(s[i]) {
			return false
		}
	}
	return true
}

// ValidNamespace reports whether s is a Kubernetes namespace name (a DNS-1123
// label): at most 63 of [a-z0-9-], starting and ending alphanumeric, no dots.
func ValidNamespace(s string) bool {
	if s == "" || len(s) > maxLabelValue || !isLowerAlnum(s[0]) || !isLowerAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; !isLowerAlnum(c) && c != '-' {
			return false
		}
	}
	return true
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func isAlnum(c byte) bool { return isLowerAlnum(c) || c >= 'A' && c <= 'Z' }
