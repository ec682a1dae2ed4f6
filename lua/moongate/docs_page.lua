-- GET /docs: one self-contained HTML page (inline CSS and script, nothing
-- fetched from anywhere else) that loads /openapi.json from the same origin
-- and renders its paths, methods, parameters, request bodies, answers and
-- schemas. When the gateway asks for an inbound key, the page asks for it
-- and sends it as Authorization: Bearer (kept in the page, never stored).
-- Every string of the document is put in the page as text (textContent),
-- never as markup. csp: the Content-Security-Policy sent with it, which
-- lets the page reach its own origin only.
local M = {}

M.csp = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
  .. "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

M.html = [==[<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>moongate API</title>
<style>
:root { --fg: #1d2330; --muted: #5c6577; --line: #dde1e8; --bg: #fff; --soft: #f5f7fa; --code: #f0f2f5;
  --get: #1f7a4d; --post: #1d5fb4; --delete: #b42318; --head: #6b4fa3; --options: #6b7280; --put: #b45309; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e4e7ee; --muted: #9aa3b5; --line: #2e3440; --bg: #14171d; --soft: #1b1f27; --code: #222733; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { padding: 1.2em 2em; border-bottom: 1px solid var(--line); background: var(--soft); }
header h1 { margin: 0; font-size: 1.5em; }
header .version { color: var(--muted); font-size: .9em; margin-left: .6em; }
header p { margin: .4em 0 0; max-width: 60em; color: var(--muted); }
main { display: flex; align-items: flex-start; }
nav { position: sticky; top: 0; width: 17em; flex: none; max-height: 100vh; overflow: auto; padding: 1em;
  border-right: 1px solid var(--line); font-size: .9em; }
nav a { display: block; color: var(--fg); text-decoration: none; padding: .1em 0; }
nav a:hover { text-decoration: underline; }
nav .group { margin-top: .8em; font-weight: 600; color: var(--muted); text-transform: uppercase; font-size: .8em; }
#content { flex: 1; min-width: 0; padding: 1em 2em 4em; }
#filter { width: 100%; padding: .45em .6em; font: inherit; border: 1px solid var(--line); border-radius: 6px;
  background: var(--bg); color: var(--fg); margin-bottom: .6em; }
h2 { margin: 1.6em 0 .2em; font-size: 1.25em; border-bottom: 1px solid var(--line); padding-bottom: .2em; }
h2 + .tagdesc { color: var(--muted); margin: 0 0 .6em; }
.path { margin: .7em 0; border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
.path > .ptitle { padding: .5em .8em; background: var(--soft); font-family: ui-monospace, monospace; font-weight: 600; }
.path > .ptitle .alias { font-weight: normal; color: var(--muted); font-size: .85em; margin-left: .8em; }
.path > .ptitle .more { float: right; font-weight: normal; }
details.op { border-top: 1px solid var(--line); }
details.op > summary { cursor: pointer; padding: .45em .8em; list-style: none; }
details.op > summary::-webkit-details-marker { display: none; }
details.op > summary:hover { background: var(--soft); }
details.op[open] > summary { border-bottom: 1px dashed var(--line); }
.opbody { padding: .4em 1em 1em; }
.m { display: inline-block; min-width: 4.8em; text-align: center; color: #fff; border-radius: 4px; font-size: .78em;
  font-weight: 700; padding: .05em .4em; margin-right: .6em; font-family: ui-monospace, monospace; }
.m.get { background: var(--get); } .m.post { background: var(--post); } .m.delete { background: var(--delete); }
.m.head { background: var(--head); } .m.options { background: var(--options); } .m.put, .m.patch { background: var(--put); }
.chip { font-size: .7em; min-width: 0; margin: 0 0 0 .3em; }
.summary { color: var(--fg); }
.desc { color: var(--muted); margin: .3em 0 .6em; white-space: pre-wrap; }
h4 { margin: 1em 0 .3em; font-size: .95em; }
table { border-collapse: collapse; width: 100%; font-size: .92em; }
th, td { text-align: left; padding: .3em .5em; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .88em; }
pre { background: var(--code); padding: .6em .8em; border-radius: 6px; overflow: auto; }
.status { font-family: ui-monospace, monospace; font-weight: 700; }
.s2 { color: var(--get); } .s1 { color: var(--head); } .s4 { color: var(--put); } .s5, .sd { color: var(--delete); }
.ctype { color: var(--muted); font-family: ui-monospace, monospace; font-size: .85em; }
.schema { margin: .2em 0 .2em .2em; font-size: .9em; }
.schema ul { list-style: none; margin: 0; padding-left: 1.1em; border-left: 1px solid var(--line); }
.schema li { margin: .15em 0; }
.pname { font-family: ui-monospace, monospace; font-weight: 600; }
.req { color: var(--delete); font-size: .8em; margin-left: .2em; }
.type { color: var(--post); font-family: ui-monospace, monospace; font-size: .88em; margin-left: .4em; }
.note { color: var(--muted); margin-left: .4em; }
a.ref { color: var(--post); }
#keyform { margin: 1em 0; padding: 1em; border: 1px solid var(--line); border-radius: 8px; background: var(--soft); }
#keyform input { font: inherit; padding: .3em .5em; width: 24em; max-width: 100%; }
.error { color: var(--delete); }
.hidden { display: none; }
</style>
</head>
<body>
<header><h1>moongate API<span class="version" id="version"></span></h1><p id="about">Loading the API description&hellip;</p></header>
<main>
<nav id="nav"></nav>
<div id="content">
<form id="keyform" class="hidden">
<div>This gateway asks for an API key. It is sent with the requests this page makes (as Authorization: Bearer) and kept nowhere.</div>
<p><input id="key" type="password" autocomplete="off" placeholder="API key"> <button type="submit">Load</button></p>
<div id="keyerror" class="error"></div>
</form>
<input id="filter" class="hidden" type="search" placeholder="Filter by path, method or words">
<div id="ops"></div>
<div id="schemas"></div>
</div>
</main>
<script>
"use strict";
(function () {
  var METHODS = ["get", "post", "put", "patch", "delete", "head", "options", "trace"];
  var MAIN = { get: 1, post: 1, put: 1, patch: 1, "delete": 1 };
  var doc = null;

  // el(tag, attrs, children...): children are nodes or text (never markup)
  function el(tag, attrs) {
    var n = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (attrs[k] == null) continue;
      if (k === "text") n.textContent = attrs[k]; else n.setAttribute(k, attrs[k]);
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c == null || c === false) continue;
      n.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return n;
  }
  function $(id) { return document.getElementById(id); }
  function anchor(s) { return String(s).replace(/[^A-Za-z0-9]+/g, "-"); }

  function refName(ref) { var m = /^#\/components\/schemas\/(.+)$/.exec(ref || ""); return m ? m[1] : null; }
  function resolve(s) {
    var name = s && refName(s["$ref"]);
    return name && doc.components && doc.components.schemas ? doc.components.schemas[name] : s;
  }
  function typeText(s) {
    if (!s || typeof s !== "object") return "any";
    if (s["$ref"]) return refName(s["$ref"]) || s["$ref"];
    if (s.anyOf || s.oneOf) return (s.anyOf || s.oneOf).map(typeText).join(" | ");
    var t = s.type;
    if (Array.isArray(t)) t = t.join(" | ");
    if (t === "array") return "array of " + typeText(s.items);
    if (!t) return s.properties ? "object" : "any";
    return t;
  }
  function refLink(s) {
    var name = refName(s["$ref"]);
    return el("a", { "class": "ref type", href: "#schema-" + anchor(name), text: name });
  }

  // a schema as a tree: type, constraints, description, its properties
  function schemaNode(s, depth, seen) {
    var box = el("div", { "class": "schema" });
    box.appendChild(schemaLine(null, s, false, depth, seen));
    return box;
  }
  function schemaLine(name, s, required, depth, seen) {
    var li = el(name == null ? "div" : "li");
    if (name != null) li.appendChild(el("span", { "class": "pname", text: name }));
    if (required) li.appendChild(el("span", { "class": "req", text: "required" }));
    if (s && s["$ref"]) li.appendChild(refLink(s));
    else li.appendChild(el("span", { "class": "type", text: typeText(s) }));
    if (s && s["const"] !== undefined) li.appendChild(el("span", { "class": "note mono", text: "= " + JSON.stringify(s["const"]) }));
    if (s && s["enum"]) li.appendChild(el("span", { "class": "note mono", text: "one of " + s["enum"].map(function (v) { return JSON.stringify(v); }).join(", ") }));
    if (s && s.pattern) li.appendChild(el("span", { "class": "note mono", text: "pattern " + s.pattern }));
    if (s && s.additionalProperties === false) li.appendChild(el("span", { "class": "note", text: "(no other fields)" }));
    if (s && s.description) li.appendChild(el("div", { "class": "desc", text: s.description }));
    if (!s || s["$ref"] || depth > 6) return li;
    var inner = s.type === "array" && s.items ? resolve(s.items) : s;
    if (s.type === "array" && s.items && s.items["$ref"]) return li;
    var props = inner && inner.properties;
    if (props && Object.keys(props).length) {
      var req = {};
      (inner.required || []).forEach(function (r) { req[r] = true; });
      var ul = el("ul");
      Object.keys(props).sort(function (a, b) { return (req[b] ? 1 : 0) - (req[a] ? 1 : 0) || (a < b ? -1 : a > b ? 1 : 0); })
        .forEach(function (k) { ul.appendChild(schemaLine(k, props[k], req[k], depth + 1, seen)); });
      li.appendChild(ul);
    }
    var alts = s.anyOf || s.oneOf;
    if (alts && alts.some(function (a) { return a.properties || (a.items && a.items.properties); })) {
      var ul2 = el("ul");
      alts.forEach(function (a, i) { ul2.appendChild(schemaLine("option " + (i + 1), a, false, depth + 1, seen)); });
      li.appendChild(ul2);
    }
    return li;
  }

  function content(c) {
    var out = el("div");
    Object.keys(c || {}).forEach(function (ctype) {
      var media = c[ctype];
      out.appendChild(el("div", { "class": "ctype", text: ctype }));
      if (media.schema) out.appendChild(schemaNode(media.schema, 0, {}));
      if (media["x-moongate-event"]) {
        out.appendChild(el("div", { "class": "schema" }, "each event: ", refLink(media["x-moongate-event"])));
      }
      if (media.example !== undefined) {
        out.appendChild(el("details", null, el("summary", { text: "example" }),
          el("pre", { text: JSON.stringify(media.example, null, 2) })));
      }
    });
    return out;
  }

  function securityText(op) {
    var sec = op.security || doc.security || [];
    if (!sec.length || sec.some(function (r) { return Object.keys(r).length === 0; })) return "no key needed";
    return "key: " + sec.map(function (r) { return Object.keys(r).join(" + "); }).join(" or ");
  }

  function operation(method, path, op, item) {
    var body = el("div", { "class": "opbody" });
    if (op.description) body.appendChild(el("div", { "class": "desc", text: op.description }));
    body.appendChild(el("div", { "class": "note", text: securityText(op) + (op.operationId ? " · operationId " + op.operationId : "") }));
    var params = (item.parameters || []).concat(op.parameters || []);
    if (params.length) {
      body.appendChild(el("h4", { text: "Parameters" }));
      var t = el("table", null, el("tr", null, el("th", { text: "name" }), el("th", { text: "in" }),
        el("th", { text: "type" }), el("th", { text: "description" })));
      params.forEach(function (p) {
        t.appendChild(el("tr", null,
          el("td", null, el("span", { "class": "pname", text: p.name }), p.required ? el("span", { "class": "req", text: "required" }) : null),
          el("td", { text: p["in"] }), el("td", { "class": "mono", text: typeText(p.schema) + (p.schema && p.schema["const"] ? " = " + p.schema["const"] : "") }),
          el("td", { text: (p.description || "") + (p.example !== undefined ? " (e.g. " + p.example + ")" : "") })));
      });
      body.appendChild(t);
    }
    if (op.requestBody) {
      body.appendChild(el("h4", { text: "Request body" + (op.requestBody.required ? "" : " (optional)") }));
      body.appendChild(content(op.requestBody.content));
    }
    body.appendChild(el("h4", { text: "Responses" }));
    var codes = Object.keys(op.responses || {}).sort();
    codes.forEach(function (code) {
      var r = op.responses[code];
      var cls = "status s" + (code === "default" ? "d" : code.charAt(0));
      var head = el("div", null, el("span", { "class": cls, text: code }), " ", r.description || "");
      if (r.headers) head.appendChild(el("span", { "class": "note", text: "headers: " + Object.keys(r.headers).join(", ") }));
      var block = r.content ? el("details", null, el("summary", null, head), content(r.content)) : head;
      body.appendChild(block);
    });
    var d = el("details", { "class": "op", id: "op-" + anchor(method + path) },
      el("summary", null, el("span", { "class": "m " + method, text: method.toUpperCase() }),
        el("span", { "class": "summary", text: op.summary || "" })), body);
    d.dataset.search = (method + " " + path + " " + (op.summary || "") + " " + (op.description || "")).toLowerCase();
    return d;
  }

  function render() {
    $("version").textContent = doc.info && doc.info.version ? "v" + doc.info.version + " · OpenAPI " + doc.openapi : "";
    $("about").textContent = (doc.info && doc.info.description) || "";
    document.title = ((doc.info && doc.info.title) || "API") + " API";
    var paths = doc.paths || {};
    // aliases (the same endpoint without /v1) are named under their original
    var aliases = {};
    Object.keys(paths).forEach(function (p) {
      var of = paths[p]["x-moongate-alias-of"];
      if (of) (aliases[of] = aliases[of] || []).push(p);
    });
    var tags = (doc.tags || []).map(function (t) { return t.name; });
    var byTag = {};
    Object.keys(paths).sort().forEach(function (p) {
      var item = paths[p];
      if (item["x-moongate-alias-of"]) return;
      var tag = null;
      METHODS.forEach(function (m) { if (!tag && item[m] && item[m].tags) tag = item[m].tags[0]; });
      tag = tag || "other";
      if (tags.indexOf(tag) < 0) tags.push(tag);
      (byTag[tag] = byTag[tag] || []).push(p);
    });
    var ops = $("ops"), nav = $("nav");
    ops.textContent = ""; nav.textContent = "";
    tags.forEach(function (tag) {
      if (!byTag[tag]) return;
      var info = (doc.tags || []).filter(function (t) { return t.name === tag; })[0] || {};
      var section = el("section", { id: "tag-" + anchor(tag) }, el("h2", { text: tag }),
        info.description ? el("div", { "class": "tagdesc", text: info.description }) : null);
      nav.appendChild(el("a", { "class": "group", href: "#tag-" + anchor(tag), text: tag }));
      byTag[tag].forEach(function (p) {
        var item = paths[p];
        var title = el("div", { "class": "ptitle" }, p);
        if (aliases[p]) title.appendChild(el("span", { "class": "alias", text: "also at " + aliases[p].join(", ") }));
        var box = el("div", { "class": "path", id: "path-" + anchor(p) }, title);
        var others = el("span", { "class": "more" });
        METHODS.forEach(function (m) {
          if (!item[m]) return;
          if (MAIN[m]) {
            box.appendChild(operation(m, p, item[m], item));
            nav.appendChild(el("a", { href: "#op-" + anchor(m + p) }, el("span", { "class": "m chip " + m, text: m.toUpperCase() }), " " + p));
          } else {
            others.appendChild(el("span", { "class": "m chip " + m, title: item[m].summary || "", text: m.toUpperCase() }));
          }
        });
        title.appendChild(others);
        // HEAD and OPTIONS, folded under one line
        var minor = METHODS.filter(function (m) { return item[m] && !MAIN[m]; });
        if (minor.length) {
          var fold = el("details", { "class": "op" }, el("summary", null,
            el("span", { "class": "note", text: "also " + minor.map(function (m) { return m.toUpperCase(); }).join(", ") })));
          var inner = el("div", { "class": "opbody" });
          minor.forEach(function (m) { inner.appendChild(operation(m, p, item[m], item)); });
          fold.appendChild(inner);
          box.appendChild(fold);
        }
        section.appendChild(box);
      });
      ops.appendChild(section);
    });
    var schemas = (doc.components && doc.components.schemas) || {};
    var sec = el("section", { id: "schemas-section" }, el("h2", { text: "Schemas" }));
    nav.appendChild(el("a", { "class": "group", href: "#schemas-section", text: "schemas" }));
    Object.keys(schemas).sort().forEach(function (name) {
      sec.appendChild(el("div", { "class": "path", id: "schema-" + anchor(name) },
        el("div", { "class": "ptitle", text: name }), el("div", { "class": "opbody" }, schemaNode(schemas[name], 0, {}))));
      nav.appendChild(el("a", { href: "#schema-" + anchor(name), text: name }));
    });
    $("schemas").textContent = "";
    $("schemas").appendChild(sec);
    $("filter").classList.remove("hidden");
  }

  $("filter").addEventListener("input", function () {
    var q = this.value.trim().toLowerCase();
    Array.prototype.forEach.call(document.querySelectorAll(".path"), function (box) {
      if (box.id.indexOf("schema-") === 0) return;
      var hit = !q || box.textContent.toLowerCase().indexOf(q) >= 0 ||
        Array.prototype.some.call(box.querySelectorAll("details.op"), function (d) { return (d.dataset.search || "").indexOf(q) >= 0; });
      box.classList.toggle("hidden", !hit);
    });
  });

  var key = "";
  function load() {
    var headers = key ? { authorization: "Bearer " + key } : {};
    fetch("openapi.json", { headers: headers, credentials: "same-origin" }).then(function (res) {
      if (res.status === 401) {
        $("keyform").classList.remove("hidden");
        $("keyerror").textContent = key ? "That key was refused." : "";
        $("about").textContent = "This gateway asks for an API key.";
        return null;
      }
      if (!res.ok) throw new Error("openapi.json answered " + res.status);
      return res.json();
    }).then(function (d) {
      if (!d) return;
      $("keyform").classList.add("hidden");
      doc = d;
      render();
      if (location.hash) { var t = document.getElementById(location.hash.slice(1)); if (t) { if (t.tagName === "DETAILS") t.open = true; t.scrollIntoView(); } }
    }).catch(function (e) {
      $("about").textContent = "";
      $("about").appendChild(el("span", { "class": "error", text: "Could not load openapi.json: " + e.message }));
    });
  }
  $("keyform").addEventListener("submit", function (e) { e.preventDefault(); key = $("key").value.trim(); load(); });
  load();
})();
</script>
</body>
</html>
]==]

return M
