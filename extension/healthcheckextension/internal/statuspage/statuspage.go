// Package statuspage is the /status page for people: one self-contained HTML
// document (no external asset, so it works in an offline cluster) whose script
// reads the same URL's JSON and renders it. It owns the content negotiation
// between the page and the JSON, and the page's Content-Security-Policy.
package statuspage // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/statuspage"

import (
	"crypto/sha256"
	_ "embed" // the page's HTML, script and style
	"encoding/base64"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

var (
	//go:embed page.html
	pageHTML string
	//go:embed page.js
	pageJS string
	//go:embed page.css
	pageCSS string
)

// page is the document served, and csp its policy: the inline script and
// style are allowed by their hashes only, so no other script runs, inline or
// from elsewhere, even if an untrusted value were ever rendered as markup.
var page, csp = build()

func build() ([]byte, string) {
	doc := strings.NewReplacer("{{CSS}}", pageCSS, "{{JS}}", pageJS).Replace(pageHTML)
	policy := strings.Join([]string{
		"default-src 'none'",
		"script-src " + hashSource(pageJS),
		"style-src " + hashSource(pageCSS),
		"connect-src 'self'",
		"img-src 'self'",
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	}, "; ")
	return []byte(doc), policy
}

func hashSource(content string) string {
	sum := sha256.Sum256([]byte(content))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// WantsHTML says whether r should get the page rather than the JSON: when
// ?format=html, or when the Accept header prefers text/html (what a browser
// sends). ?format=json, a missing Accept, */* (curl) and application/json
// get the JSON, as before the page existed.
func WantsHTML(r *http.Request) bool {
	switch r.URL.Query().Get("format") {
	case "html":
		return true
	case "json":
		return false
	}
	htmlQ, htmlNamed, jsonQ := acceptQuality(r.Header.Values("Accept"))
	// text/html must be named: */* alone (curl, most clients) keeps the JSON.
	return htmlNamed && htmlQ > 0 && htmlQ >= jsonQ
}

// acceptQuality returns the q-values an Accept header gives text/html and
// application/json, each by its most specific matching range, and whether
// text/html itself was named.
func acceptQuality(accept []string) (htmlQ float64, htmlNamed bool, jsonQ float64) {
	type best struct {
		q           float64
		specificity int // 0 for */*, 1 for type/*, 2 for type/subtype
	}
	html, json := best{specificity: -1}, best{specificity: -1}
	consider := func(b *best, mediaType, want string, q float64) {
		spec := -1
		switch {
		case mediaType == want:
			spec = 2
		case mediaType == strings.SplitN(want, "/", 2)[0]+"/*":
			spec = 1
		case mediaType == "*/*":
			spec = 0
		}
		if spec > b.specificity {
			*b = best{q: q, specificity: spec}
		}
	}
	for _, header := range accept {
		for _, part := range strings.Split(header, ",") {
			mediaType, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			q := 1.0
			if v, ok := params["q"]; ok {
				if parsed, err := strconv.ParseFloat(v, 64); err == nil {
					q = parsed
				}
			}
			consider(&html, mediaType, "text/html", q)
			consider(&json, mediaType, "application/json", q)
		}
	}
	return html.q, html.specificity == 2, json.q
}

// Serve writes the page with its security headers. The page's data comes from
// the same URL with ?format=json.
func Serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Length", strconv.Itoa(len(page)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(page)
}
