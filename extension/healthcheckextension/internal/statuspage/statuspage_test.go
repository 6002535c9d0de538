package statuspage

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestWantsHTML(t *testing.T) {
	const firefox = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	const chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
	cases := []struct {
		name, url, accept string
		want              bool
	}{
		{"no Accept (plain clients)", "/status", "", false},
		{"curl", "/status", "*/*", false},
		{"JSON asked", "/status", "application/json", false},
		{"Firefox", "/status", firefox, true},
		{"Chromium", "/status", chrome, true},
		{"JSON preferred over HTML", "/status", "application/json, text/html;q=0.5", false},
		{"HTML refused", "/status", "text/html;q=0, */*", false},
		{"text/* is not a browser", "/status", "text/*", false},
		{"?format=json beats a browser", "/status?format=json", chrome, false},
		{"?format=html beats curl", "/status?format=html", "*/*", true},
		{"unknown format falls back to Accept", "/status?format=xml", chrome, true},
		{"malformed Accept", "/status", ";;;,text/html", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, c.url, http.NoBody)
			if c.accept != "" {
				r.Header.Set("Accept", c.accept)
			}
			if got := WantsHTML(r); got != c.want {
				t.Errorf("WantsHTML(%q, Accept %q) = %v, want %v", c.url, c.accept, got, c.want)
			}
		})
	}
}

// The page is one small, self-contained document: no external asset (the
// cluster may be offline), under 50 KB, with a policy that lets only its own
// inline script and style run.
func TestServe(t *testing.T) {
	rec := httptest.NewRecorder()
	Serve(rec, httptest.NewRequest(http.MethodGet, "/status", http.NoBody))
	res := rec.Result()
	body := rec.Body.String()
	if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if n := len(body); n == 0 || n > 50*1024 {
		t.Errorf("page is %d bytes, want 1..50 KiB", n)
	}
	if strings.Contains(body, "{{") {
		t.Error("a template placeholder was left in the page")
	}
	if m := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//`).FindString(body); m != "" {
		t.Errorf("the page loads an external asset: %s", m)
	}
	policy := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'sha256-", "style-src 'sha256-", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(policy, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", policy, want)
		}
	}
	if strings.Contains(policy, "unsafe-inline") || strings.Contains(policy, "unsafe-eval") {
		t.Errorf("Content-Security-Policy allows unsafe sources: %q", policy)
	}
	if !strings.Contains(policy, hashSource(pageJS)) || !strings.Contains(policy, hashSource(pageCSS)) {
		t.Error("the policy's hashes are not those of the served script and style")
	}
	if res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no X-Content-Type-Options: nosniff")
	}

	head := httptest.NewRecorder()
	Serve(head, httptest.NewRequest(http.MethodHead, "/status", http.NoBody))
	if head.Body.Len() != 0 || head.Result().Header.Get("Content-Length") != res.Header.Get("Content-Length") {
		t.Errorf("HEAD: body %d bytes, Content-Length %q", head.Body.Len(), head.Result().Header.Get("Content-Length"))
	}
}

// The script renders every value with textContent: it never parses data as
// markup.
func TestScriptNeverParsesMarkup(t *testing.T) {
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		if strings.Contains(pageJS, sink) {
			t.Errorf("page.js uses %s", sink)
		}
	}
}
