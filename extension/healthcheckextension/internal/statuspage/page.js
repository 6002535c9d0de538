// The /status page: fetches the JSON of the same URL every few seconds and
// renders it with DOM calls and textContent only, so every value from spans
// or configs (service names, error texts) is shown as text, never as markup.
(function () {
  "use strict";
  var REFRESH_MS = 5000;
  var root = document.getElementById("status");
  var jsonURL = location.pathname + "?format=json";

  function el(tag, attrs, children) {
    var n = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "text") n.textContent = attrs[k];
        else n.setAttribute(k, attrs[k]);
      });
    }
    (children || []).forEach(function (c) {
      n.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return n;
  }
  function num(v) { return typeof v === "number" ? v.toLocaleString() : "–"; }
  function when(t) {
    if (!t || t.indexOf("0001-") === 0) return "–";
    var d = new Date(t);
    if (isNaN(d)) return String(t);
    var secs = Math.round((Date.now() - d.getTime()) / 1000);
    var ago = secs < 60 ? secs + " s ago" : secs < 3600 ? Math.round(secs / 60) + " min ago" : Math.round(secs / 3600) + " h ago";
    return d.toLocaleString() + " (" + ago + ")";
  }
  var WORDS = { ok: "OK", degraded: "Degraded", unavailable: "Unavailable" };

  function table(id, heads, rows) {
    var thead = el("thead", null, [el("tr", null, heads.map(function (h) { return el("th", { scope: "col", text: h }); }))]);
    return el("div", { "class": "scroll" }, [el("table", { id: id }, [thead, el("tbody", null, rows)])]);
  }

  // What to change in a service, in one sentence, from its report line.
  function whatToChange(p) {
    if (!p.orphans) return "Nothing: its outbound calls continue the incoming trace.";
    if (p.relinked > 0) {
      return "Forward traceparent (and tracestate) from each incoming request to the calls it makes; it already forwards x-request-id, so a B3-only or non-W3C propagator is the likely cause.";
    }
    return "Forward traceparent and x-request-id from each incoming request to the calls it makes (an OpenTelemetry SDK with W3C propagation does both).";
  }

  function exportersSection(exporters) {
    var ids = Object.keys(exporters || {}).sort();
    if (!ids.length) return el("p", { "class": "muted", text: "No exporter reports delivery." });
    var rows = ids.map(function (id) {
      var e = exporters[id];
      var delivering = e.delivering !== false;
      var degraded = e.status === "degraded" || e.failed > 0;
      var state = delivering ? (degraded ? "delivering, degraded" : "delivering") : "not delivering";
      var cls = delivering ? (degraded ? "state-warn" : "state-ok") : "state-bad";
      var err = e.last_error ? e.last_error + (e.error_code ? " (" + e.error_code + ")" : "") +
        (e.last_error_at ? ", " + when(e.last_error_at) : "") : "–";
      var cap = e.queue_capacity || 0, size = e.queue_size || 0;
      var fill = cap > 0 ? Math.min(1, size / cap) : 0;
      var bar = el("div", { "class": "bar" + (fill > 0.8 ? " high" : ""), role: "img",
        "aria-label": "queue " + Math.round(fill * 100) + "% full" }, [el("span")]);
      bar.firstChild.style.width = (fill * 100).toFixed(1) + "%";
      var attempts = e.observer && typeof e.attempts === "number" ? num(e.failed_attempts || 0) + " of " + num(e.attempts) : "–";
      return el("tr", { "data-exporter": id }, [
        el("th", { scope: "row", text: id }),
        el("td", null, [el("div", { "class": cls + " exporter-state", text: state }),
          el("div", { "class": "muted exporter-cause", text: e.cause || "" })]),
        el("td", { "class": "exporter-error", text: err }),
        el("td", { "class": "num", text: num(e.sent) }),
        el("td", { "class": "num", text: num(e.failed) }),
        el("td", { "class": "num", text: attempts }),
        el("td", null, [bar, el("div", { "class": "muted", text: num(size) + " / " + num(cap) + " (" + Math.round(fill * 100) + "%)" })]),
        el("td", { text: when(e.last_delivery) })
      ]);
    });
    var windowText = ids.length && exporters[ids[0]].window ? " (" + exporters[ids[0]].window + ")" : "";
    return table("exporters", ["exporter", "state", "latest error", "spans sent" + windowText, "spans dropped",
      "failed attempts", "queue", "last delivery"], rows);
  }

  function propagationSection(lines) {
    if (!Array.isArray(lines) || !lines.length) {
      return el("p", { "class": "muted", text: "No outbound calls from sidecars seen yet." });
    }
    var sorted = lines.slice().sort(function (a, b) {
      return (b.orphan_ratio || 0) - (a.orphan_ratio || 0) || (b.orphans || 0) - (a.orphans || 0) ||
        String(a.service).localeCompare(String(b.service));
    });
    var rows = sorted.map(function (p) {
      var ratio = typeof p.orphan_ratio === "number" ? Math.round(p.orphan_ratio * 100) + "%" : "–";
      return el("tr", { "class": p.orphans ? "broken" : "" }, [
        el("th", { scope: "row", "class": "service", text: String(p.service) }),
        el("td", { "class": "num", text: num(p.outbound) }),
        el("td", { "class": "num", text: num(p.orphans) }),
        el("td", { "class": "num" + (p.orphans ? " state-bad" : ""), text: ratio }),
        el("td", { "class": "num", text: num(p.relinked) }),
        el("td", { "class": "diagnosis", text: p.diagnosis || "–" }),
        el("td", { "class": "fix", text: whatToChange(p) })
      ]);
    });
    return table("propagation", ["service", "outbound calls", "orphans", "orphan ratio", "relinked", "diagnosis", "what to change"], rows);
  }

  function componentsSection(components) {
    var rows = [];
    var pipelines = (components && components.pipelines) || {};
    Object.keys(pipelines).sort().forEach(function (pl) {
      Object.keys(pipelines[pl]).sort().forEach(function (c) {
        rows.push([pl, c, pipelines[pl][c]]);
      });
    });
    var exts = (components && components.extensions) || {};
    Object.keys(exts).sort().forEach(function (c) { rows.push(["extensions", c, exts[c]]); });
    if (!rows.length) return el("p", { "class": "muted", text: "No component status yet." });
    return table("components", ["pipeline", "component", "status", "since", "error"], rows.map(function (r) {
      var s = r[2] || {};
      var cls = s.status === "ok" ? "state-ok" : /error/.test(s.status || "") ? "state-bad" : "";
      return el("tr", null, [el("td", { text: r[0] }), el("th", { scope: "row", text: r[1] }),
        el("td", { "class": cls, text: s.status || "–" }), el("td", { text: when(s.since) }), el("td", { text: s.error || "" })]);
    }));
  }

  function render(doc, fetchedAt) {
    var status = doc.status || "unknown";
    var badge = el("span", { id: "overall", "class": "badge " + status, text: WORDS[status] || status });
    var since = doc.since ? " since " + when(doc.since) : "";
    var header = el("header", null, [
      el("h1", { text: "otelcol-istio" }), badge,
      el("span", { id: "overall-text", text: "Status: " + (WORDS[status] || status) + since }),
      el("span", { "class": "muted", id: "updated", text: "updated " + fetchedAt.toLocaleTimeString() })
    ]);
    var known = { status: 1, since: 1, components: 1, exporters: 1, delivery: 1, propagation: 1, uptime: 1 };
    var main = el("main", null, [
      el("h2", { text: "Is the collector delivering?" }), exportersSection(doc.exporters),
      el("h2", { text: "Which services break their traces?" }), propagationSection(doc.propagation),
      el("h2", { text: "Components" }), componentsSection(doc.components)
    ]);
    Object.keys(doc).sort().forEach(function (k) {
      if (known[k]) return;
      main.appendChild(el("h2", { text: k }));
      main.appendChild(el("pre", { "class": "scroll", text: JSON.stringify(doc[k], null, 2) }));
    });
    var footer = el("footer", null, [el("a", { href: jsonURL, text: "The same data as JSON" }),
      " · refreshes every " + REFRESH_MS / 1000 + " s"]);
    root.replaceChildren(header, main, footer);
  }

  function refresh() {
    fetch(jsonURL, { cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (doc) { render(doc, new Date()); })
      .catch(function (err) {
        var msg = el("p", { id: "fetch-error", "class": "error", text: "Cannot read " + jsonURL + ": " + err + " (retrying)" });
        var old = document.getElementById("fetch-error");
        if (old) old.replaceWith(msg); else root.prepend(msg);
      })
      .finally(function () { setTimeout(refresh, REFRESH_MS); });
  }
  refresh();
})();
