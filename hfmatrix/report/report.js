"use strict";
// hfmatrix report page: the landing view (rendered in the HTML) gets filters and a drill-down; the
// records (index-data.js beside the page) load on demand with a <script> tag (fetch() of file:// is blocked).
const D = JSON.parse(document.getElementById("data").textContent);
const O = D.outcomes, NO = O.length;
let S = null, R = null, AGG = null;
const BAD = new Set(D.bad);
const IP = O.indexOf("passed"), IS = O.indexOf("skipped"), IXF = O.indexOf("xfailed");
const NC = D.columns.length;
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const fmtErr = (x) => x === null || x === undefined ? "" : typeof x === "string" ? x : x === 0 ? "0" : x.toExponential(1);
const colBackend = (c) => D.columns[c].backend || D.columns[c].session;

// outcome filter: which outcome indices count
const OUTCOME_FILTERS = {
  "all": null,
  "not passed": O.map((_, i) => i).filter((i) => BAD.has(i)),
  "skipped": [IS],
  "xfailed": [IXF],
  "passed": [IP],
};
const state = { backend: new Set(), klass: new Set(), check: new Set(), outcome: "all", text: "" };

function chips(el, values, key, single) {
  el.innerHTML = (single ? "" : `<button data-v="" class="on">all</button>`) +
    values.map((v) => `<button data-v="${esc(v)}"${single && v === state[key] ? ' class="on"' : ""}>${esc(v)}</button>`).join("");
  el.addEventListener("click", (ev) => {
    const b = ev.target.closest("button"); if (!b) return;
    const v = b.dataset.v;
    if (single) state[key] = v;
    else if (v === "") state[key].clear();
    else state[key].has(v) ? state[key].delete(v) : state[key].add(v);
    for (const x of el.querySelectorAll("button"))
      x.classList.toggle("on", single ? x.dataset.v === state[key] : (x.dataset.v === "" ? state[key].size === 0 : state[key].has(x.dataset.v)));
    render();
  });
}

function visibleColumns() {
  const out = [];
  for (let c = 0; c < NC; c++) if (!state.backend.size || state.backend.has(colBackend(c))) out.push(c);
  return out;
}

function cellTotals() {
  // (row*NC+col) -> counts[NO] + worst error, over the selected checks
  const cells = new Map();
  const checks = state.check;
  for (const a of AGG) {
    if (checks.size && !checks.has(D.checks[a[2]])) continue;
    const key = a[0] * NC + a[1];
    let c = cells.get(key);
    if (!c) { c = new Array(NO + 1).fill(0); c[NO] = null; cells.set(key, c); }
    for (let i = 0; i < NO; i++) c[i] += a[3 + i];
    const e = a[3 + NO];
    if (e !== null && (c[NO] === null || typeof e === "string" || (typeof c[NO] === "number" && e > c[NO]))) c[NO] = e;
  }
  return cells;
}

function cellHtml(r, c, counts, keep, incomplete) {
  if (!counts) return `<td class="cell none">–</td>`;
  const k = keep ? keep : null;
  const n = (i) => (k && !k.includes(i)) ? 0 : counts[i];
  let bad = 0; for (const i of BAD) bad += n(i);
  const p = n(IP), s = n(IS), x = n(IXF);
  if (!bad && !p && !s && !x) return `<td class="cell none">·</td>`;
  const cls = bad ? "bad" : p ? "ok" : x ? "xf" : "sk";
  const parts = [];
  if (bad) parts.push(`<span class="n-bad">${bad} ✗</span>`);
  if (p) parts.push(`<span class="n-ok">${p} ✓</span>`);
  if (x) parts.push(`<span class="n-xf">${x} xfail</span>`);
  if (s) parts.push(`<span class="n-sk">${s} skip</span>`);
  const e = fmtErr(counts[NO]);
  return `<td class="cell ${cls}${incomplete ? " incc" : ""}" data-r="${r}" data-c="${c}" data-bad="${bad}" data-passed="${p}" data-skipped="${s}" data-xfailed="${x}">` +
    parts.join(" ") + (e ? `<span class="err">${e}</span>` : "") + `</td>`;
}

function render() {
  const cols = visibleColumns();
  const cells = cellTotals();
  const keep = OUTCOME_FILTERS[state.outcome];
  const text = state.text.toLowerCase();
  const head = [`<thead><tr><th class="rm">model</th>`];
  for (const c of cols) {
    const col = D.columns[c];
    const sub = [col.backend !== col.session ? col.backend : "", col.device, col.precision].filter(Boolean).join(" · ");
    head.push(`<th class="${col.incomplete ? "inc" : ""}" title="${esc(col.label)}"><span class="ch-s">${esc(col.session)}</span>` +
      `<span class="ch-d">${esc(sub)}</span>` + (col.software ? `<span class="tag sw" title="evidence says this device is emulated in software">SOFTWARE</span> ` : "") +
      (col.incomplete ? `<span class="tag inc">INCOMPLETE</span>` : "") + `</th>`);
  }
  head.push("</tr></thead>");
  const body = ["<tbody>"];
  const tot = new Array(NO).fill(0);
  let lastClass = null, shownRows = 0;
  for (let r = 0; r < D.rows.length; r++) {
    const [klass, model] = D.rows[r];
    if (state.klass.size && !state.klass.has(klass)) continue;
    if (text && !model.toLowerCase().includes(text)) continue;
    let any = false;
    for (const c of cols) {
      const counts = cells.get(r * NC + c); if (!counts) continue;
      for (let i = 0; i < NO; i++) if (!keep || keep.includes(i)) { if (counts[i]) any = true; }
    }
    if (!any) continue;
    shownRows++;
    if (klass !== lastClass) { body.push(`<tr class="grp"><td class="rm">${esc(klass)}</td><td colspan="${cols.length}"></td></tr>`); lastClass = klass; }
    const tds = [];
    for (const c of cols) {
      const counts = cells.get(r * NC + c);
      if (counts) for (let i = 0; i < NO; i++) if (!keep || keep.includes(i)) tot[i] += counts[i];
      tds.push(cellHtml(r, c, counts, keep, D.columns[c].incomplete));
    }
    body.push(`<tr><td class="rm" title="${esc(klass)}">${esc(model)}</td>${tds.join("")}</tr>`);
  }
  body.push("</tbody>");
  document.getElementById("matrix").innerHTML = head.join("") + body.join("");
  let bad = 0; for (const i of BAD) bad += tot[i];
  const shown = document.getElementById("shown");
  shown.dataset.rows = shownRows; shown.dataset.passed = tot[IP]; shown.dataset.failed = bad;
  shown.dataset.skipped = tot[IS]; shown.dataset.xfailed = tot[IXF];
  shown.innerHTML = shownRows ? `Showing <b>${shownRows}</b> models × <b>${cols.length}</b> columns: ` +
    `<span class="${bad ? "n-bad" : "n-sk"}">${bad} did not pass</span> · <span class="n-ok">${tot[IP]} passed</span> · ` +
    `<span class="n-sk">${tot[IS]} skipped</span> · <span class="n-xf">${tot[IXF]} xfailed</span>` : "No checks match these filters.";
}

// --- records ---------------------------------------------------------------------------------
function recordMatches(i, keep) {
  if (state.check.size && !state.check.has(D.checks[R.k[i]])) return false;
  if (keep && !keep.includes(R.o[i])) return false;
  if (state.backend.size && !state.backend.has(colBackend(R.c[i]))) return false;
  const [klass, model] = D.rows[R.r[i]];
  if (state.klass.size && !state.klass.has(klass)) return false;
  if (state.text && !model.toLowerCase().includes(state.text.toLowerCase())) return false;
  return true;
}

function recordRows(idx, limit, inCell) {
  // inCell: the drawer of one cell, where model and column are the same for every row
  const rows = idx.slice(0, limit).map((i) => {
    const o = O[R.o[i]];
    const tol = R.tol[i] ? tolText(JSON.parse(S[R.tol[i]])) : "";
    return `<tr class="rec" data-i="${i}"><td><span class="oc ${o}">${o}</span></td><td>${esc(D.checks[R.k[i]])}</td>` +
      (inCell ? "" : `<td class="mono">${esc(D.rows[R.r[i]][1])}</td><td>${esc(D.columns[R.c[i]].label)}</td>`) +
      `<td class="mono">${fmtErr(R.err[i])}</td><td class="mono nw">${esc(tol)}</td>` +
      `<td class="msg" title="${esc(S[R.msg[i]])}">${esc(headline(S[R.msg[i]]))}</td></tr>`;
  });
  const head = ["outcome", "check", ...(inCell ? [] : ["model", "column"]), "max |Δ|", "tolerance", "message"];
  return `<table class="rt"><thead><tr>${head.map((h) => `<th>${h}</th>`).join("")}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

function tolText(t) {
  if (t === null || t === undefined) return "";
  if (typeof t === "number") return t.toExponential(1);
  if (typeof t === "object") {
    const parts = [];
    for (const k of ["atol", "rtol"]) if (k in t) parts.push(`${k} ${typeof t[k] === "number" ? t[k].toExponential(1) : t[k]}`);
    return parts.join(" · ") || JSON.stringify(t);
  }
  return String(t);
}

function tolWhy(t) {
  return t && typeof t === "object" ? [t.reason, t.source].filter(Boolean).join("; ") : "";
}

function recordDetail(i, span) {
  const col = D.columns[R.c[i]];
  const sess = D.sessions.find((s) => s.name === col.session) || {};
  const pretty = (j) => j ? esc(JSON.stringify(JSON.parse(S[j]), null, 2)) : "";
  const vers = (sess.versions && sess.versions[0]) ? esc(JSON.stringify(sess.versions[0][0], null, 2)) : "";
  return `<tr class="detail"><td colspan="${span}">` +
    `<div class="kv">nodeid <code>${esc(S[R.idp[i]] + S[R.id[i]])}</code> · shard ${esc(S[R.sh[i]])} · ${R.dur[i] ?? "?"} s` +
    (BAD.has(R.o[i]) ? `<div class="rerun">rerun: <code class="cmd">${esc(rerun(col.session, S[R.idp[i]] + S[R.id[i]]))}</code></div>` : "") +
    (R.sk[i] ? ` · skip kind <span class="kind">${esc(S[R.sk[i]])}</span>` : "") + `</div>` +
    (R.msg[i] ? `<h4>message</h4><pre>${esc(S[R.msg[i]])}</pre>` : "") +
    `<h4>measured</h4><pre>max_abs_err  ${fmtErr(R.err[i]) || "—"}\ntolerance    ${R.tol[i] ? esc(tolText(JSON.parse(S[R.tol[i]]))) + "  (" + esc(tolWhy(JSON.parse(S[R.tol[i]]))) + ")" : "—"}` +
    (R.ms[i] ? `\n${pretty(R.ms[i])}` : "") + `</pre>` +
    `<h4>evidence (where it really ran)</h4>${R.ev[i] ? `<pre>${pretty(R.ev[i])}</pre>` : "<p class='warn'>no evidence recorded</p>"}` +
    `<h4>env</h4><p><a href="#env-${esc(col.session)}">session ${esc(col.session)}</a>${sess.complete === false ? " <span class='tag inc'>INCOMPLETE</span>" : ""}</p>` +
    (vers ? `<details><summary>library versions</summary><pre>${vers}</pre></details>` : "") + `</td></tr>`;
}

function attachDetails(root) {
  root.addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr.rec"); if (!tr) return;
    const next = tr.nextElementSibling;
    if (next && next.classList.contains("detail")) { next.remove(); return; }
    tr.insertAdjacentHTML("afterend", recordDetail(+tr.dataset.i, tr.children.length));
  });
}

function showDrawer(title, idx, inCell) {
  idx.sort((a, b) => (BAD.has(R.o[b]) - BAD.has(R.o[a])) || (R.o[a] - R.o[b]));
  document.getElementById("dtitle").innerHTML = title + `<div class="kv">${idx.length} records</div>`;
  const body = document.getElementById("dbody");
  body.innerHTML = recordRows(idx, 500, inCell) + (idx.length > 500 ? `<p class="kv">first 500 of ${idx.length}</p>` : "");
  const first = body.querySelector("tr.rec");   // a failure opens with its detail: the reader came for it
  if (first && BAD.has(R.o[+first.dataset.i])) first.click();
  document.getElementById("drawer").hidden = false;
}

function openCell(r, c) {
  const keep = OUTCOME_FILTERS[state.outcome];
  const idx = [];
  for (let i = 0; i < R.r.length; i++) if (R.r[i] === r && R.c[i] === c && recordMatches(i, keep)) idx.push(i);
  const col = D.columns[c], sess = D.sessions.find((s) => s.name === col.session) || {};
  showDrawer(`<b class="mono">${esc(D.rows[r][1])}</b> <span class="kv">${esc(D.rows[r][0])}</span><br>` +
    `${esc(col.label)} ${col.software ? '<span class="tag sw">SOFTWARE</span>' : ""} ${col.incomplete ? '<span class="tag inc">INCOMPLETE</span>' : ""}` +
    (sess.incomplete && sess.incomplete.length ? `<div class="kv">${esc(sess.incomplete.join("; "))}</div>` : ""), idx, true);
}

function openLanding(ri, ci) {
  const L = D.landing, [klass, model, r] = L.rows[ri], col = L.cols[ci], cols = new Set(col.full);
  const idx = [];
  for (let i = 0; i < R.r.length; i++)
    if (R.r[i] === r && cols.has(R.c[i]) && !D.checks[R.k[i]].startsWith("autozoo_")) idx.push(i);
  showDrawer(`<b class="mono">${esc(model)}</b> <span class="kv">${esc(klass)}</span><br>${esc(col.label)}` +
    (col.software ? ' <span class="tag sw">SOFTWARE</span>' : "") + ` <span class="kv">session ${esc(col.sessions.join(", "))}</span>`,
    idx, cols.size === 1);
}

// --- helpers ----------------------------------------------------------------------------------
function headline(msg) {
  // records written before the plugin put the assertion first open with xdist's "[gw1] linux -- Python" banner
  const lines = String(msg || "").trim().split("\n");
  if (!lines[0].startsWith("[gw")) return lines[0];
  const e = lines.filter((l) => l.startsWith("E ")).map((l) => l.slice(1).trim());
  return e.length ? e.slice(0, 3).join(" ") : (lines[1] || lines[0]);
}

function rerun(session, nodeid) {
  // xdist's --dist=loadgroup reports "path::test[id]@group": pytest selects by the part before it
  const cut = nodeid.includes("[") ? nodeid.lastIndexOf("]") + 1 : nodeid.length;
  nodeid = nodeid.slice(0, cut).replace(/(::[^:@\[]+)@[^:]*$/, "$1");
  const q = (s) => /^[\w@%+=:,./-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\"'\"'") + "'";
  return `nox -s ${q(session)} -- ${q(nodeid)}`;
}

let detailWaiters = null;
function withDetail(cb) {
  // the records load once, on first need, from the script beside the page
  if (R) return cb();
  if (detailWaiters) { detailWaiters.push(cb); return; }
  detailWaiters = [cb];
  const note = document.getElementById("load-note");
  const s = document.createElement("script");
  s.src = D.detail;
  s.onload = () => {
    const X = window.HFM_DETAIL;
    if (!X || X.token !== D.token) { note.innerHTML = `<span class="warn">${esc(D.detail)} beside this page is from another run: rebuild the report.</span>`; return; }
    S = X.strings; R = X.rec; AGG = X.agg;
    const w = detailWaiters; detailWaiters = [];
    for (const f of w) f();
  };
  s.onerror = () => { note.innerHTML = `<span class="warn">${esc(D.detail)} is missing beside this page: the records cannot be shown.</span>`; detailWaiters = null; };
  document.head.appendChild(s);
}

// --- landing filters ------------------------------------------------------------------------
const LS = { backend: new Set(), klass: new Set(), rows: "all" };
function applyLanding() {
  const t = document.getElementById("landing"); if (!t) return;
  for (const el of t.querySelectorAll("[data-b]")) el.hidden = LS.backend.size > 0 && !LS.backend.has(el.dataset.b);
  const groups = new Map();
  for (const tr of t.querySelectorAll("tbody tr")) {
    const k = tr.dataset.k;
    if (tr.classList.contains("grp")) { groups.set(k, tr); tr.hidden = true; continue; }
    const hide = (LS.klass.size > 0 && !LS.klass.has(k)) || (LS.rows === "not passed" && tr.dataset.bad !== "1");
    tr.hidden = hide;
    if (!hide) groups.get(k).hidden = false;
  }
  for (const g of groups.values()) g.lastElementChild.colSpan = Math.max(1, t.querySelectorAll("thead th:not([hidden])").length - 1);
}

function landingChips(el, values, set, single) {
  el.innerHTML = (single ? "" : `<button data-v="" class="on">all</button>`) +
    values.map((v) => `<button data-v="${esc(v)}"${single && v === LS.rows ? ' class="on"' : ""}>${esc(v)}</button>`).join("");
  el.addEventListener("click", (ev) => {
    const b = ev.target.closest("button"); if (!b) return;
    const v = b.dataset.v;
    if (single) LS.rows = v; else if (v === "") set.clear(); else set.has(v) ? set.delete(v) : set.add(v);
    for (const x of el.querySelectorAll("button"))
      x.classList.toggle("on", single ? x.dataset.v === LS.rows : (x.dataset.v === "" ? set.size === 0 : set.has(x.dataset.v)));
    applyLanding();
  });
}

// --- wiring ----------------------------------------------------------------------------------
function initFull() {
  chips(document.getElementById("f-backend"), [...new Set(D.columns.map((_, c) => colBackend(c)))].sort(), "backend");
  chips(document.getElementById("f-class"), [...new Set(D.rows.map((r) => r[0]))].sort(), "klass");
  chips(document.getElementById("f-check"), D.checks, "check");
  chips(document.getElementById("f-outcome"), Object.keys(OUTCOME_FILTERS), "outcome", true);
  document.getElementById("f-text").addEventListener("input", (ev) => { state.text = ev.target.value; render(); });
  document.getElementById("matrix").addEventListener("click", (ev) => {
    const td = ev.target.closest("td.cell[data-r]"); if (td) openCell(+td.dataset.r, +td.dataset.c);
  });
  document.getElementById("full").hidden = false;
  document.getElementById("load-all").hidden = true;
  render();
  document.body.dataset.full = "1";
}
let fullShown = false;
document.getElementById("load-all").onclick = () => withDetail(() => { if (!fullShown) { fullShown = true; initFull(); } });
if (D.landing && D.landing.cols) {
  landingChips(document.getElementById("l-backend"), [...new Set(D.landing.cols.map((c) => c.backend))].sort(), LS.backend);
  landingChips(document.getElementById("l-class"), [...new Set(D.landing.rows.map((r) => r[0]))], LS.klass);
  landingChips(document.getElementById("l-rows"), ["all", "not passed"], null, true);
  const t = document.getElementById("landing");
  if (t) t.addEventListener("click", (ev) => {
    const td = ev.target.closest("td.lc[data-ri]"); if (td) withDetail(() => openLanding(+td.dataset.ri, +td.dataset.ci));
  });
}
document.getElementById("dclose").onclick = () => { document.getElementById("drawer").hidden = true; };
document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") document.getElementById("drawer").hidden = true; });
attachDetails(document.getElementById("dbody"));
document.body.dataset.ready = "1";
