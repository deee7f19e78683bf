// The search page of `lsr serve`: plain JavaScript over the /v1 API (search, explain, indexes).
// State lives in the URL (?q=&index=&mode=&size=&from=&filter=), so a result page can be linked.
"use strict";

const $ = (id) => document.getElementById(id);
let indexes = [];   // /v1/indexes
let state = { q: "", index: "", mode: "exact", size: 10, from: 0, filter: "" };

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// The API's own error message ({"error": {"status", "message"}}), or the HTTP status.
async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  const key = $("apikey").value || sessionStorage.getItem("lsr-api-key");
  if (key) headers["X-API-Key"] = key;
  const response = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  let data = null;
  try { data = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const message = data && data.error ? data.error.message : `HTTP ${response.status}`;
    throw new Error(`${response.status}: ${message}`);
  }
  return data;
}

// --- matching terms highlighted ------------------------------------------------------------------
// A word is marked when it folds (lower case, accents off) to a matching term, or starts with one of
// four letters or more (a stem: "studies" -> "studi"; a word piece without "##").
function fold(word) {
  return word.normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
}

function matches(word, terms) {
  const w = fold(word);
  for (const t of terms) {
    if (w === t || (t.length >= 4 && w.startsWith(t) && w.length - t.length <= 4)) return true;
  }
  return false;
}

function highlighted(text, terms) {
  const out = document.createDocumentFragment();
  let last = 0;
  for (const m of text.matchAll(/[\p{L}\p{N}]+/gu)) {
    if (!matches(m[0], terms)) continue;
    out.append(text.slice(last, m.index), el("mark", {}, m[0]));
    last = m.index + m[0].length;
  }
  out.append(text.slice(last));
  return out;
}

// --- results ---------------------------------------------------------------------------------------
function fmt(x) { return Number(x).toFixed(4); }

function whyPanel(hit, explained) {
  const rows = explained.terms.map((t) => el("tr", { class: "term", "data-contribution": String(t.contribution) },
    el("td", {}, t.term), el("td", {}, fmt(t.query_weight)), el("td", {}, "\u00d7 " + fmt(t.doc_impact)),
    el("td", {}, "= " + fmt(t.contribution))));
  const total = el("tr", { class: "total", "data-sum": String(explained.score) },
    el("td", {}, `${explained.terms.length} matching terms`), el("td", {}, ""), el("td", {}, "sum"),
    el("td", {}, "= " + fmt(explained.score)));
  const head = el("tr", {}, el("th", {}, "term"), el("th", {}, "query weight"), el("th", {}, "doc impact"),
    el("th", {}, "contribution"));
  return el("div", { class: "why-panel" }, el("table", {}, head, ...rows, total),
    el("p", {}, `score ${fmt(hit.score)} = the sum of query weight \u00d7 document impact`));
}

function renderHit(hit, explained) {
  const terms = explained ? explained.terms.map((t) => fold(t.term.replace(/^##/, ""))) : [];
  const why = el("button", { class: "why", type: "button", "aria-expanded": "false" }, "why?");
  const li = el("li", { class: "hit", "data-id": hit.id, "data-score": String(hit.score) },
    el("div", { class: "head" }, el("span", { class: "rank" }, `${hit.rank}.`),
      el("span", { class: "title" }, highlighted(hit.title || hit.id, terms))),
    el("div", { class: "meta" }, el("span", { class: "docid" }, hit.id), " \u00b7 score ",
      el("span", { class: "score" }, fmt(hit.score)), " ", why));
  if (hit.text) {
    const text = hit.text.length > 320 ? hit.text.slice(0, 320) + "\u2026" : hit.text;
    li.append(el("p", { class: "snippet" }, highlighted(text, terms)));
  }
  why.addEventListener("click", () => {
    const open = li.querySelector(".why-panel");
    if (open) { open.remove(); why.setAttribute("aria-expanded", "false"); return; }
    if (explained) li.append(whyPanel(hit, explained));
    why.setAttribute("aria-expanded", "true");
  });
  return li;
}

async function search() {
  showError("");
  const served = indexes.find((i) => i.name === state.index);
  const body = { query: state.q, index: state.index, mode: state.mode, k: state.size, from: state.from };
  if (served && served.docstore) body.fields = ["title", "text"];
  if (state.filter.trim()) {
    try { body.filter = JSON.parse(state.filter); } catch (e) {
      throw new Error(`the filter is not valid JSON: ${e.message}`);
    }
  }
  const answer = await api("POST", "v1/search", body);
  const ids = answer.hits.map((h) => h.id);
  const explained = {};
  if (ids.length) {
    const why = await api("POST", "v1/explain", { query: state.q, index: state.index, ids });
    for (const d of why.docs) explained[d.id] = d;
  }
  $("results").replaceChildren(...answer.hits.map((h) => renderHit(h, explained[h.id])));
  $("status").textContent = answer.hits.length
    ? `results ${state.from + 1}\u2013${state.from + answer.hits.length} (${answer.took_ms} ms, index ` +
      `${answer.index}, ${answer.query_terms} query terms)`
    : "no documents match";
  $("pager").hidden = !answer.hits.length && state.from === 0;
  $("prev").disabled = state.from === 0;
  $("next").disabled = answer.hits.length < state.size;
  $("page").textContent = `page ${Math.floor(state.from / state.size) + 1}`;
}

// --- the form, the URL and the index list ----------------------------------------------------------
function readForm() {
  state.q = $("q").value;
  state.index = $("index").value;
  state.mode = $("mode").value;
  state.size = Number($("size").value);
  state.filter = $("filter").value;
}

function writeUrl() {
  const p = new URLSearchParams({ q: state.q, index: state.index, mode: state.mode, size: state.size,
    from: state.from });
  if (state.filter.trim()) p.set("filter", state.filter);
  history.replaceState(null, "", "?" + p.toString());
}

function fillModes() {
  const served = indexes.find((i) => i.name === $("index").value);
  const modes = served ? served.modes : ["exact"];
  $("mode").replaceChildren(...modes.map((m) => el("option", {}, m)));
  if (modes.includes(state.mode)) $("mode").value = state.mode;
}

async function run() {
  if (!state.q.trim()) { showError("type a query"); return; }
  writeUrl();
  try { await search(); } catch (e) { showError(e.message); }
}

async function loadIndexes() {
  try {
    indexes = (await api("GET", "v1/indexes")).indexes;
    showError("");
  } catch (e) { showError(e.message); return false; }
  $("index").replaceChildren(...indexes.map((i) => el("option", {}, i.name)));
  if (indexes.some((i) => i.name === state.index)) $("index").value = state.index;
  fillModes();
  return true;
}

async function start() {
  const p = new URLSearchParams(location.search);
  state = { q: p.get("q") || "", index: p.get("index") || "", mode: p.get("mode") || "exact",
    size: Number(p.get("size")) || 10, from: Number(p.get("from")) || 0, filter: p.get("filter") || "" };
  $("q").value = state.q;
  $("size").value = String(state.size);
  $("filter").value = state.filter;
  $("apikey").value = sessionStorage.getItem("lsr-api-key") || "";
  const ok = await loadIndexes();
  if (ok && state.q) await run();
}

$("form").addEventListener("submit", (ev) => { ev.preventDefault(); readForm(); state.from = 0; run(); });
$("index").addEventListener("change", fillModes);
$("apikey").addEventListener("change", () => {
  sessionStorage.setItem("lsr-api-key", $("apikey").value);
  loadIndexes();
});
$("prev").addEventListener("click", () => { state.from = Math.max(0, state.from - state.size); run(); });
$("next").addEventListener("click", () => { state.from += state.size; run(); });
start();
