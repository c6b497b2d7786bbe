(function () {
"use strict";
const D = JSON.parse(document.getElementById("tf-data").textContent);
const S = D.strings, B = D.bars, N = B.id.length, L = D.lanes.length, OUT = D.meta.outcomes;
// caught: the framework caught the request's exception (a 500) and the task went on: red, as a failure
const COLORS = { resolved: "#43a047", failed: "#e53935", caught: "#c62828", cancelled: "#fb8c00", abandoned: "#8e24aa",
  pending: "#1e88e5", incomplete: "#78909c", expected: "#a1887f" };
const NAMES = { caught: "caught by the framework", expected: "expected failure" };  // in the legend and the filter
const outColor = OUT.map(function (o) { return COLORS[o] || "#777777"; });
const PAINT_ORDER = ["resolved", "expected", "incomplete", "pending", "abandoned", "cancelled", "caught", "failed"]
  .map(function (o) { return OUT.indexOf(o); }).filter(function (o) { return o >= 0; });
const ids = B.id, start = Float64Array.from(B.start), end = Float64Array.from(B.end);
const lane = Int32Array.from(B.lane), row = Uint8Array.from(B.row), outc = Uint8Array.from(B.outcome);
const isTask = Uint8Array.from(B.task), nameIdx = Int32Array.from(B.name), siteIdx = Int32Array.from(B.site);
const fullIdx = Int32Array.from(B.site_full), resultIdx = Int32Array.from(B.result), creator = Float64Array.from(B.creator);
const programIdx = Int32Array.from(B.program);  // the program's line, when the site is a library's (-1: none)
const barById = new Map();
for (let i = 0; i < N; i++) barById.set(ids[i], i);
// A server's lanes come in groups (a route's requests, the background): group g is
// shown as the pseudo-lane L + g, a header over its lanes when open, a summary of
// them when folded.
const G = D.groups, NG = G.length, grouped = NG > 0;
const groupOpen = Uint8Array.from(G, function (g) { return g.open ? 1 : 0; });
const laneGroup = new Int32Array(L).fill(-1);
G.forEach(function (g, k) { g.lanes.forEach(function (l) { laneGroup[l] = k; }); });
const PROBLEM = new Uint8Array(OUT.length);
["failed", "caught", "cancelled", "abandoned"].forEach(function (o) { if (OUT.indexOf(o) >= 0) PROBLEM[OUT.indexOf(o)] = 1; });
// A folded group's summary, per row, bars in order of start: its tasks, and their unhappy futures.
const summary = G.map(function (g) {
  const rows = [];
  for (let r = 0; r < g.rows; r++) rows.push([]);
  for (let k = 0; k < g.sum.length; k += 2) rows[g.sum[k + 1]].push(g.sum[k]);
  rows.forEach(function (list) { list.sort(function (a, b) { return start[a] - start[b]; }); });
  return rows;
});

const ROW_H = 12, LANE_PAD = 3, AXIS_H = 24;
let GUTTER = D.groups.length ? 270 : 210;  // the lane labels' column: drag its edge to resize it
const laneRows = new Uint8Array(L + NG).fill(1);
for (let i = 0; i < N; i++) if (row[i] + 1 > laneRows[lane[i]]) laneRows[lane[i]] = row[i] + 1;
// Lanes are shown in a display order (sorted, filtered, grouped): order[p] is the
// lane at position p, pos[l] the position of lane l (-1: hidden), laneTop by position.
let order = new Int32Array(L), LV = L;
const pos = new Int32Array(L + NG), laneTop = new Float64Array(L + NG + 1);
for (let l = 0; l < L; l++) order[l] = l;
function layout() {
  pos.fill(-1);
  for (let g = 0; g < NG; g++) laneRows[L + g] = groupOpen[g] ? 1 : G[g].rows;
  laneTop[0] = 0;
  for (let p = 0; p < LV; p++) {
    const l = order[p];
    pos[l] = p;
    laneTop[p + 1] = laneTop[p] + laneRows[l] * ROW_H + 2 * LANE_PAD;
  }
}
layout();
// Bars come sorted by lane, row and start: each (lane, row) is one contiguous range.
const rowFirst = new Map(), rowEnd = new Map();
for (let i = 0; i < N; i++) {
  const key = lane[i] * 64 + row[i];
  if (!rowFirst.has(key)) rowFirst.set(key, i);
  rowEnd.set(key, i + 1);
}
function triples(flat) {
  const n = flat.length / 3, bar = new Int32Array(n), task = new Float64Array(n), ts = new Float64Array(n);
  for (let k = 0; k < n; k++) { bar[k] = flat[3 * k]; task[k] = flat[3 * k + 1]; ts[k] = flat[3 * k + 2]; }
  return { n: n, bar: bar, task: task, ts: ts };
}
const wakes = triples(D.wakes), awaits = triples(D.awaits);
const wakeLane = new Int32Array(wakes.n);
for (let k = 0; k < wakes.n; k++) {
  const t = barById.get(wakes.task[k]);
  wakeLane[k] = t === undefined ? -1 : lane[t];
}

const view = document.getElementById("view"), canvas = document.getElementById("timeline");
const ctx = canvas.getContext("2d"), tooltip = document.getElementById("tooltip");
const details = document.getElementById("details"), hint = details.firstElementChild;
const searchBox = document.getElementById("search"), matchesEl = document.getElementById("matches");
const arrowsBox = document.getElementById("arrows");
const DUR = Math.max(D.meta.duration, 1000);
let W = 0, H = 0, dpr = 1, t0 = 0, t1 = 1, scrollY = 0;
let keep = null, filterMode = "all", sortKey = grouped ? "group" : "tree";  // keep[i]: bar i matches the filter
let selected = -1, hovered = -1, match = null, matchList = [], matchAt = -1;
const stats = { bars: 0, rects: 0, arrows: 0, frameMs: 0 };

function fmtDur(ns) {
  const a = Math.abs(ns), sign = ns < 0 ? "-" : "";
  function three(v) { return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2); }
  if (a < 1e3) return sign + Math.round(a) + "ns";
  if (a < 1e6) return sign + three(a / 1e3) + "us";
  if (a < 1e9) return sign + three(a / 1e6) + "ms";
  if (a < 6e10) return sign + three(a / 1e9) + "s";
  return sign + Math.floor(a / 6e10) + "m" + String(Math.floor(a / 1e9) % 60).padStart(2, "0") + "s";
}
function label(i) {
  const name = nameIdx[i] >= 0 ? S[nameIdx[i]] + " " : "";
  return (isTask[i] ? "task " : "future ") + name + "#" + ids[i];
}
function xOf(t) { return GUTTER + (t - t0) / (t1 - t0) * (W - GUTTER); }
function tOf(x) { return t0 + (x - GUTTER) / (W - GUTTER) * (t1 - t0); }
function laneY(l) { return AXIS_H + laneTop[pos[l]] - scrollY; }
function barY(i) { return laneY(lane[i]) + LANE_PAD + row[i] * ROW_H; }
function maxScroll() { return Math.max(0, laneTop[LV] - (H - AXIS_H) + 20); }
function clampView() {
  const span = Math.min(Math.max(t1 - t0, 100), DUR * 4);
  if (t0 < -DUR * 2) t0 = -DUR * 2;
  if (t0 > DUR * 1.5) t0 = DUR * 1.5;
  t1 = t0 + span;
  scrollY = Math.min(Math.max(scrollY, 0), maxScroll());
}
function resetView() { t0 = -DUR * 0.01; t1 = DUR * 1.01; scrollY = 0; }
function zoom(factor, atT) {
  const t = atT === undefined ? (t0 + t1) / 2 : atT;
  t0 = t - (t - t0) * factor; t1 = t - (t - t1) * factor; clampView(); redraw();
}
function firstLaneAt(y) {  // a display position
  let lo = 0, hi = LV;
  while (lo < hi) { const m = (lo + hi) >> 1; if (laneTop[m + 1] <= y) lo = m + 1; else hi = m; }
  return lo;
}

function drawAxis() {
  ctx.fillStyle = "#f6f8fa"; ctx.fillRect(0, 0, W, AXIS_H);
  ctx.strokeStyle = "#d9dee3"; ctx.beginPath(); ctx.moveTo(0, AXIS_H - 0.5); ctx.lineTo(W, AXIS_H - 0.5); ctx.stroke();
  const raw = (t1 - t0) * 110 / Math.max(W - GUTTER, 1), pow = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = pow * (raw / pow <= 2 ? 2 : raw / pow <= 5 ? 5 : 10);
  ctx.fillStyle = "#66707a"; ctx.font = "11px system-ui, sans-serif"; ctx.textBaseline = "middle";
  const grid = new Path2D();
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    const x = Math.round(xOf(t)) + 0.5;
    if (x < GUTTER) continue;
    grid.moveTo(x, AXIS_H - 6); grid.lineTo(x, H);
    const text = "+" + fmtDur(t);
    if (x + 3 + ctx.measureText(text).width <= W) ctx.fillText(text, x + 3, AXIS_H / 2);
  }
  ctx.strokeStyle = "rgba(0, 0, 0, 0.07)"; ctx.stroke(grid);
}

function draw() {
  const began = performance.now();
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#ffffff"; ctx.fillRect(0, 0, W, H);
  const l0 = Math.max(0, firstLaneAt(scrollY)), l1 = Math.min(LV - 1, firstLaneAt(scrollY + H - AXIS_H));
  for (let p = l0; p <= l1; p++) {
    const header = order[p] >= L;
    if (header || p % 2) {
      ctx.fillStyle = header ? "#eef2f6" : "#fafbfc";
      ctx.fillRect(GUTTER, AXIS_H + laneTop[p] - scrollY, W - GUTTER, laneTop[p + 1] - laneTop[p]);
    }
  }
  D.loop_lints.forEach(function (lint) {  // a blocked loop blocks every lane: one band across all
    const x0 = xOf(lint.ts - (lint.age_ns || 0)), x1 = xOf(lint.ts);
    ctx.fillStyle = "rgba(229, 57, 53, 0.10)"; ctx.fillRect(Math.max(GUTTER, x0), AXIS_H, Math.max(2, x1 - x0), H);
  });
  const normal = OUT.map(function () { return new Path2D(); }), faint = OUT.map(function () { return new Path2D(); });
  const tasks = OUT.map(function () { return new Path2D(); });
  const lastPx = new Float64Array(OUT.length);
  let bars = 0, rects = 0;
  for (let p = l0; p <= l1; p++) {
    const l = order[p];
    if (l >= L) {
      if (!groupOpen[l - L]) { const drawn = drawSummary(l - L, tasks, normal, lastPx); bars += drawn[0]; rects += drawn[1]; }
      continue;
    }
    for (let r = 0; r < laneRows[l]; r++) {
      const key = l * 64 + r, a = rowFirst.get(key);
      if (a === undefined) continue;
      const b = rowEnd.get(key), y = laneY(l) + LANE_PAD + r * ROW_H;
      lastPx.fill(-1);
      for (let i = a; i < b; i++) {
        if (end[i] < t0 || start[i] > t1) continue;
        bars++;
        let x0 = xOf(start[i]), x1 = xOf(end[i]);
        if (x0 < GUTTER) x0 = GUTTER;
        if (x1 > W) x1 = W;
        const o = outc[i], px = Math.floor(x0);
        const dim = (match && !match[i]) || (keep && !keep[i]);
        if (x1 - x0 < 3 && PROBLEM[o]) x1 = x0 + 3;  // a failure stays in sight however far out
        else if (x1 - x0 < 1) {
          if (lastPx[o] === px && !match && !keep) continue;  // another bar of this colour already fills this pixel
          lastPx[o] = px; x1 = x0 + 1;
        }
        rects++;
        if (isTask[i]) tasks[o].rect(x0, y + 1, x1 - x0, ROW_H - 3);
        else (dim ? faint : normal)[o].rect(x0, y + 2, x1 - x0, ROW_H - 4);
      }
    }
  }
  PAINT_ORDER.forEach(function (o) {
    ctx.fillStyle = outColor[o];
    ctx.globalAlpha = match ? 0.25 : 0.45; ctx.fill(tasks[o]);
    ctx.globalAlpha = 0.15; ctx.fill(faint[o]);
    ctx.globalAlpha = 1; ctx.fill(normal[o]);
  });
  if (match) {  // matching tasks drawn again, opaque
    ctx.globalAlpha = 1;
    for (const i of matchList) if (isTask[i] && pos[lane[i]] >= l0 && pos[lane[i]] <= l1 && end[i] >= t0 && start[i] <= t1) {
      ctx.fillStyle = outColor[outc[i]];
      ctx.fillRect(Math.max(GUTTER, xOf(start[i])), barY(i) + 1, Math.max(1, xOf(end[i]) - Math.max(GUTTER, xOf(start[i]))), ROW_H - 3);
    }
  }
  stats.arrows = drawArrows(l0, l1);
  [hovered, selected].forEach(function (i, k) {
    if (i < 0 || pos[lane[i]] < 0) return;
    const x0 = Math.max(GUTTER, xOf(start[i])), x1 = Math.max(x0 + 1, Math.min(W, xOf(end[i])));
    ctx.lineWidth = k ? 2 : 1; ctx.strokeStyle = k ? "#000000" : "#555555";
    ctx.strokeRect(x0 - 1, barY(i), x1 - x0 + 2, ROW_H - 1);
  });
  ctx.lineWidth = 1;
  drawGutter(l0, l1);
  drawAxis();
  stats.bars = bars; stats.rects = rects; stats.frameMs = performance.now() - began;
}

function drawSummary(g, tasks, normal, lastPx) {
  // A folded group: each task pale on its row, its unhappy futures solid on the same row.
  const top = laneY(L + g) + LANE_PAD;
  let bars = 0, rects = 0;
  summary[g].forEach(function (list, r) {
    const y = top + r * ROW_H;
    lastPx.fill(-1);
    for (const i of list) {
      if (end[i] < t0 || start[i] > t1) continue;
      bars++;
      let x0 = xOf(start[i]), x1 = xOf(end[i]);
      if (x0 < GUTTER) x0 = GUTTER;
      if (x1 > W) x1 = W;
      const o = outc[i], px = Math.floor(x0);
      if (x1 - x0 < 3 && PROBLEM[o]) x1 = x0 + 3;
      else if (x1 - x0 < 1) {
        if (isTask[i] && lastPx[o] === px) continue;
        lastPx[o] = px; x1 = x0 + 1;
      }
      rects++;
      if (isTask[i]) tasks[o].rect(x0, y + 1, x1 - x0, ROW_H - 3);
      else normal[o].rect(x0, y + 2, x1 - x0, ROW_H - 4);
    }
  });
  return [bars, rects];
}

function groupText(g) {  // "3 requests · 6 futures and tasks: 3 failed, 3 resolved"
  const info = G[g], parts = [], total = info.counts.reduce(function (a, b) { return a + b; }, 0);
  PAINT_ORDER.slice().reverse().forEach(function (o) { if (info.counts[o]) parts.push(info.counts[o] + " " + OUT[o]); });
  return info.tasks + " " + info.unit + (info.tasks === 1 ? "" : "s") + " \u00b7 " + total +
    (total === 1 ? " future or task: " : " futures and tasks: ") + parts.join(", ");
}
function groupShort(g) {  // for the label column: "4328 requests · 3 failed", or "· all resolved"
  const info = G[g], parts = [info.tasks + " " + info.unit + (info.tasks === 1 ? "" : "s")];
  PAINT_ORDER.slice().reverse().forEach(function (o) { if (info.counts[o] && OUT[o] !== "resolved") parts.push(info.counts[o] + " " + OUT[o]); });
  if (parts.length === 1) parts.push("all resolved");
  return parts.join(" \u00b7 ");
}
function groupColor(g) {
  const info = G[g];
  for (const o of PAINT_ORDER.slice().reverse()) if (info.counts[o] && o !== OUT.indexOf("resolved")) return outColor[o];
  return outColor[OUT.indexOf("resolved")];
}

function drawArrows(l0, l1) {
  function visible(k) {
    const i = wakes.bar[k], ln = wakeLane[k];
    if (ln < 0 || pos[ln] < 0 || pos[lane[i]] < 0) return false;
    if (wakes.ts[k] < t0 || end[i] > t1 + (t1 - t0) || end[i] < t0 - (t1 - t0)) return false;
    return (pos[lane[i]] >= l0 && pos[lane[i]] <= l1) || (pos[ln] >= l0 && pos[ln] <= l1);
  }
  const chosen = [];
  if (arrowsBox.checked) {
    for (let k = 0; k < wakes.n && chosen.length <= 3000; k++) if (visible(k)) chosen.push(k);
    if (chosen.length > 3000) chosen.length = 0;  // too many to read: zoom in to see them
  }
  if (selected >= 0 && pos[lane[selected]] >= 0) {
    for (let k = 0; k < wakes.n; k++) if (wakes.bar[k] === selected && wakeLane[k] >= 0 && pos[wakeLane[k]] >= 0) chosen.push(k);
  }
  const path = new Path2D(), heads = new Path2D();
  for (const k of chosen) {
    const i = wakes.bar[k];
    const xa = Math.max(GUTTER, xOf(end[i])), ya = barY(i) + ROW_H / 2;
    const xb = Math.max(GUTTER, xOf(wakes.ts[k])), yb = laneY(wakeLane[k]) + LANE_PAD + ROW_H / 2;
    if (Math.abs(ya - yb) < 2 && Math.abs(xa - xb) < 2) continue;
    path.moveTo(xa, ya); path.lineTo(xb, yb);
    const angle = Math.atan2(yb - ya, xb - xa);
    heads.moveTo(xb, yb);
    heads.lineTo(xb - 6 * Math.cos(angle - 0.45), yb - 6 * Math.sin(angle - 0.45));
    heads.lineTo(xb - 6 * Math.cos(angle + 0.45), yb - 6 * Math.sin(angle + 0.45));
    heads.closePath();
  }
  ctx.strokeStyle = "rgba(40, 48, 56, 0.55)"; ctx.stroke(path);
  ctx.fillStyle = "rgba(40, 48, 56, 0.75)"; ctx.fill(heads);
  return chosen.length;
}

function drawGutter(l0, l1) {
  ctx.fillStyle = "#f6f8fa"; ctx.fillRect(0, AXIS_H, GUTTER, H);
  ctx.strokeStyle = "#d9dee3"; ctx.beginPath(); ctx.moveTo(GUTTER - 0.5, 0); ctx.lineTo(GUTTER - 0.5, H); ctx.stroke();
  ctx.font = "12px system-ui, sans-serif"; ctx.textBaseline = "middle";
  shownLabels.clear();
  for (let p = l0; p <= l1; p++) {
    const l = order[p], y = laneY(l) + LANE_PAD + ROW_H / 2;
    if (l >= L) { drawGroupLabel(l - L, p, y); continue; }
    const info = D.lanes[l], g = laneGroup[l], indent = g >= 0 && pos[L + g] >= 0 ? 12 : 0;
    if (info.bar >= 0) { ctx.fillStyle = outColor[outc[info.bar]]; ctx.fillRect(8 + indent, y - 4, 8, 8); }
    ctx.fillStyle = "#1d232a";
    // under its group's label, a request's lane says only what the label does not
    const said = indent && info.label.startsWith(G[g].label + " ") ? info.label.slice(G[g].label.length + 1) : info.label;
    const text = fitText(said, GUTTER - 30 - indent);
    shownLabels.set(l, text);
    ctx.fillText(text, 22 + indent, y);
  }
  ctx.font = "12px system-ui, sans-serif";
}
function fitText(text, room) {
  if (ctx.measureText(text).width > room) {  // cut by halves: a long label costs a few measures, not one per character
    let lo = 0, hi = text.length;
    while (lo < hi) { const m = (lo + hi + 1) >> 1; if (ctx.measureText(text.slice(0, m) + "\u2026").width <= room) lo = m; else hi = m - 1; }
    text = text.slice(0, lo) + "\u2026";
  }
  return text;
}
function drawGroupLabel(g, p, y) {
  const info = G[g];
  ctx.fillStyle = "#e4e9ef"; ctx.fillRect(0, AXIS_H + laneTop[p] - scrollY, GUTTER - 1, laneTop[p + 1] - laneTop[p]);
  ctx.fillStyle = groupColor(g); ctx.fillRect(8, y - 4, 8, 8);
  ctx.fillStyle = "#1d232a"; ctx.font = "600 12px system-ui, sans-serif";
  const text = fitText((groupOpen[g] ? "\u25be " : "\u25b8 ") + info.label, GUTTER - 30);
  shownLabels.set(L + g, text);
  ctx.fillText(text, 22, y);
  ctx.font = "11px system-ui, sans-serif"; ctx.fillStyle = "#66707a";
  if (!groupOpen[g] && info.rows > 1) ctx.fillText(fitText(groupShort(g), GUTTER - 30), 22, y + ROW_H);
  else if (groupOpen[g]) ctx.fillText(groupText(g), GUTTER + 6, y);
  ctx.font = "12px system-ui, sans-serif";
}

const shownLabels = new Map();
let queued = false;
function redraw() {
  if (queued) return;
  queued = true;
  requestAnimationFrame(function () { queued = false; draw(); });
}
function resize() {
  const box = view.getBoundingClientRect();
  dpr = window.devicePixelRatio || 1; W = Math.max(box.width, GUTTER + 50); H = Math.max(box.height, AXIS_H + 20);
  canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
  canvas.style.width = W + "px"; canvas.style.height = H + "px";
  clampView(); draw();
}

function hitTest(x, y) {
  if (x < GUTTER || y < AXIS_H) return -1;
  const yy = y - AXIS_H + scrollY, p = firstLaneAt(yy);
  if (p >= LV) return -1;
  const l = order[p], r = Math.floor((yy - laneTop[p] - LANE_PAD) / ROW_H);
  if (r < 0 || r >= laneRows[l]) return -1;
  if (l >= L) return groupOpen[l - L] ? -1 : hitSummary(l - L, r, x);
  const a = rowFirst.get(l * 64 + r);
  if (a === undefined) return -1;
  const b = rowEnd.get(l * 64 + r), t = tOf(x), tol = 3 * (t1 - t0) / (W - GUTTER);
  let lo = a, hi = b;  // first bar starting after t + tol
  while (lo < hi) { const m = (lo + hi) >> 1; if (start[m] <= t + tol) lo = m + 1; else hi = m; }
  let best = -1, bestD = Infinity;
  for (let i = lo - 1; i >= a && i >= lo - 64; i--) {
    const d = t < start[i] ? start[i] - t : t > end[i] ? t - end[i] : 0;
    if (d <= tol && d < bestD) { best = i; bestD = d; }
  }
  return best;
}

function hitSummary(g, r, x) {
  // The unhappy future nearest the pointer, else the task under it.
  const t = tOf(x), tol = 3 * (t1 - t0) / (W - GUTTER);
  let best = -1, bestD = Infinity;
  for (const i of summary[g][r]) {
    if (start[i] > t + tol) break;
    const d = (t < start[i] ? start[i] - t : t > end[i] ? t - end[i] : 0) + (isTask[i] ? tol / 2 : 0);
    if (t <= end[i] + tol && d < bestD) { best = i; bestD = d; }
  }
  return best;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function link(id) {
  const i = barById.get(id);
  if (i === undefined) return el("span", "#" + id + " (not in the trace)");
  const a = el("a", label(i));
  a.href = "#";
  a.addEventListener("click", function (ev) { ev.preventDefault(); reveal(i); selectBar(i); });
  return a;
}
function showDetails(i) {
  details.replaceChildren();
  if (i < 0) { details.append(hint); return; }
  const d = D.details[i] || {}, dl = el("dl"), outcome = OUT[outc[i]];
  details.append(el("h2", label(i)), dl);
  function item(key, value) {
    if (value === undefined || value === null || value === "") return;
    const dd = el("dd");
    if (value instanceof Node) dd.append(value); else dd.textContent = String(value);
    if (key === "outcome") { dd.className = "outcome"; dd.style.color = outColor[outc[i]]; }
    dl.append(el("dt", key), dd);
  }
  function links(list) {
    if (!list.length) return null;
    const span = el("span");
    list.forEach(function (entry, n) {
      if (n) span.append(document.createTextNode(", "));
      span.append(link(entry[0]), document.createTextNode(" at +" + fmtDur(entry[1])));
    });
    return span;
  }
  item("outcome", outcome === "caught" ? "caught by the framework: the request failed, its task returned"
    : outcome + (d.unretrieved ? " (exception never retrieved)" : ""));
  item("started", "+" + fmtDur(start[i]));
  item(outcome === "pending" ? "pending for" : "lifetime", fmtDur(end[i] - start[i]) + (outcome === "pending" ? " (at least)" : ""));
  if (programIdx[i] >= 0) {  // the program's line first, the library's as detail
    item("program line", S[programIdx[i]]);
    item("via", fullIdx[i] >= 0 ? S[fullIdx[i]] : "(unknown)");
  } else item("site", fullIdx[i] >= 0 ? S[fullIdx[i]] : "(unknown)");
  item("coroutine", d.coro);
  if (d.parent_id !== undefined) item("parent task", link(d.parent_id));
  if (creator[i] >= 0 && creator[i] !== d.parent_id) item("created in", link(creator[i]));
  item("result", d.value !== undefined ? d.value : resultIdx[i] >= 0 ? S[resultIdx[i]] : undefined);
  if (d.exc_type) item(d.caught ? "caught exception" : "exception", d.exc_type + (d.exc_msg ? ": " + d.exc_msg : ""));
  if (d.raised) item("raised at", d.raised[0] + (d.raised[1] ? "\nvia " + d.raised[1] : ""));
  if (outcome === "cancelled") {
    item("cancel msg", d.msg !== undefined ? d.msg : "(none)");
    const by = el("span");
    if (d.canceller_id !== undefined) by.append(link(d.canceller_id)); else by.append("code outside any task");
    if (d.canceller) by.append(document.createTextNode(" in " + d.canceller));
    item("cancelled by", by);
    if (d.waiting) item("while waiting at", d.waiting);
  }
  (d.cancel_requests || []).forEach(function (req) {
    const span = el("span", "+" + fmtDur(req[0]) + (req[1] !== null ? " msg " + JSON.stringify(req[1]) : "") + " by ");
    if (req[2] !== null) span.append(link(req[2])); else span.append("code outside any task");
    if (req[3]) span.append(document.createTextNode(" in " + req[3]));
    item("cancel requested", span);
  });
  if (d.waiting && outcome !== "cancelled" && d.cancel_requests) item("while waiting at", d.waiting);
  const aw = [], wk = [];
  for (let k = 0; k < awaits.n; k++) if (awaits.bar[k] === i) aw.push([awaits.task[k], awaits.ts[k]]);
  for (let k = 0; k < wakes.n; k++) if (wakes.bar[k] === i) wk.push([wakes.task[k], wakes.ts[k]]);
  item("awaited by", links(aw));
  item("woke", links(wk));
  (d.lints || []).forEach(function (lint) {
    const box = el("div");
    box.append(el("span", lint.kind + (lint.age_ns ? " after " + fmtDur(lint.age_ns) : "")));
    if (lint.detail) box.append(el("pre", lint.detail));
    item("lint", box);
  });
  item("id", ids[i]);
}
function selectBar(i) { selected = i; showDetails(i); redraw(); }
function showLane(l) {
  if (pos[l] < 0 && filterMode !== "all") setFilter("all");  // a lane the filter hides: show every lane again
  if (pos[l] < 0 && laneGroup[l] >= 0) { groupOpen[laneGroup[l]] = 1; arrange(true); }  // in a folded group: unfold it
  if (pos[l] < 0 && sortKey === "group") setSort("tree");
}
function reveal(i) {
  showLane(lane[i]);
  const y = laneTop[pos[lane[i]]];
  if (y < scrollY || y + ROW_H * 2 > scrollY + H - AXIS_H) scrollY = y - (H - AXIS_H) / 3;
  const span = t1 - t0, len = end[i] - start[i];
  if (start[i] > t1 || end[i] < t0 || (xOf(end[i]) - xOf(start[i]) < 3 && span > len * 50)) {
    const want = Math.max(len * 8, 2000);
    const s = span > want ? want : span;
    t0 = (start[i] + end[i]) / 2 - s / 2; t1 = t0 + s;
  }
  clampView(); redraw();
}

function showTooltip(i, x, y) {
  if (i < 0) { tooltip.hidden = true; return; }
  const d = D.details[i] || {};
  const lines = [label(i), OUT[outc[i]] + " " + fmtDur(end[i] - start[i]) + ", at +" + fmtDur(start[i])];
  if (programIdx[i] >= 0) lines.push(S[programIdx[i]], "via " + (siteIdx[i] >= 0 ? S[siteIdx[i]] : "(unknown site)"));
  else if (siteIdx[i] >= 0) lines.push(S[siteIdx[i]]);
  if (d.exc_type) lines.push(d.exc_type + (d.exc_msg ? ": " + d.exc_msg : "") + (d.caught ? " (caught by the framework)" : ""));
  if (d.raised) lines.push("raised at " + d.raised[0] + (d.raised[1] ? " (via " + d.raised[1] + ")" : ""));
  if (d.waiting) lines.push((OUT[outc[i]] === "cancelled" ? "cancelled" : "cancel requested") + " while waiting at " + d.waiting);
  if (pos[lane[i]] < 0 && laneGroup[lane[i]] >= 0) lines.push("(click to see it in its lane)");
  if (OUT[outc[i]] === "cancelled" && d.msg !== undefined) lines.push("msg " + JSON.stringify(d.msg));
  tooltip.textContent = lines.join("\n");
  tooltip.hidden = false;
  const left = Math.min(x + 14, W - tooltip.offsetWidth - 4), top = y + 16 + tooltip.offsetHeight > H ? y - tooltip.offsetHeight - 8 : y + 16;
  tooltip.style.left = Math.max(0, left) + "px"; tooltip.style.top = Math.max(0, top) + "px";
}

let drag = null;
view.addEventListener("mousedown", function (ev) { drag = { x: ev.clientX, y: ev.clientY, t0: t0, t1: t1, s: scrollY, moved: false }; });
window.addEventListener("mouseup", function () { if (drag) view.classList.remove("dragging"); setTimeout(function () { drag = null; }, 0); });
view.addEventListener("mousemove", function (ev) {
  const box = canvas.getBoundingClientRect(), x = ev.clientX - box.left, y = ev.clientY - box.top;
  if (drag && ev.buttons & 1) {
    const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; view.classList.add("dragging"); }
    const dt = dx / (W - GUTTER) * (drag.t1 - drag.t0);
    t0 = drag.t0 - dt; t1 = drag.t1 - dt; scrollY = drag.s - dy; clampView(); tooltip.hidden = true; redraw();
    return;
  }
  const i = hitTest(x, y);
  if (i !== hovered) { hovered = i; redraw(); }
  showTooltip(i, x, y);
});
view.addEventListener("mouseleave", function () { hovered = -1; tooltip.hidden = true; redraw(); });
view.addEventListener("click", function (ev) {
  if (drag && drag.moved) return;
  const box = canvas.getBoundingClientRect(), i = hitTest(ev.clientX - box.left, ev.clientY - box.top);
  if (i >= 0 && pos[lane[i]] < 0) reveal(i);  // a bar of a folded group's summary: unfold it, show its lane
  selectBar(i);
});
view.addEventListener("wheel", function (ev) {
  ev.preventDefault();
  const box = canvas.getBoundingClientRect(), x = ev.clientX - box.left;
  if (ev.ctrlKey || ev.metaKey) { zoom(Math.exp(ev.deltaY * 0.002), x > GUTTER ? tOf(x) : undefined); return; }
  const dt = ev.deltaX / (W - GUTTER) * (t1 - t0);
  t0 += dt; t1 += dt; scrollY += ev.shiftKey ? 0 : ev.deltaY; clampView(); redraw();
}, { passive: false });
window.addEventListener("keydown", function (ev) {
  if (ev.target === searchBox || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const span = t1 - t0, k = ev.key.toLowerCase();
  if (k === "w" || k === "+" || k === "=") zoom(0.7);
  else if (k === "s" || k === "-") zoom(1 / 0.7);
  else if (k === "a") { t0 -= span * 0.2; t1 -= span * 0.2; clampView(); redraw(); }
  else if (k === "d") { t0 += span * 0.2; t1 += span * 0.2; clampView(); redraw(); }
  else if (k === "0") { resetView(); redraw(); }
  else if (k === "escape") selectBar(-1);
});
document.getElementById("zoom-in").addEventListener("click", function () { zoom(0.5); });
document.getElementById("zoom-out").addEventListener("click", function () { zoom(2); });
document.getElementById("reset").addEventListener("click", function () { resetView(); redraw(); });
arrowsBox.addEventListener("change", redraw);

let lower = null, failures = null, searchTimer = 0;
function search(text) {
  const q = text.trim().toLowerCase();
  matchList = []; matchAt = -1;
  if (!q) { match = null; matchesEl.textContent = ""; redraw(); return 0; }
  if (!lower) lower = S.map(function (s) { return s.toLowerCase(); });
  const hit = new Uint8Array(S.length);
  for (let k = 0; k < S.length; k++) if (lower[k].indexOf(q) >= 0) hit[k] = 1;
  const wantId = /^#?\d+$/.test(q) ? Number(q.replace("#", "")) : -1;
  match = new Uint8Array(N);
  for (let i = 0; i < N; i++) {
    if ((nameIdx[i] >= 0 && hit[nameIdx[i]]) || (siteIdx[i] >= 0 && hit[siteIdx[i]]) ||
        (programIdx[i] >= 0 && hit[programIdx[i]]) || ids[i] === wantId) {
      match[i] = 1; matchList.push(i);
    }
  }
  if (!failures) {  // exception types and messages: only failures have them
    failures = [];
    for (const key in D.details) {
      const d = D.details[key];
      if (d.exc_type) failures.push([Number(key), (d.exc_type + ": " + (d.exc_msg || "")).toLowerCase()]);
    }
  }
  for (const [i, text] of failures) if (!match[i] && text.indexOf(q) >= 0) { match[i] = 1; matchList.push(i); }
  matchList.sort(function (a, b) { return start[a] - start[b]; });
  matchesEl.textContent = matchList.length === 1 ? "1 match" : matchList.length + " matches";
  redraw();
  return matchList.length;
}
searchBox.addEventListener("input", function () { clearTimeout(searchTimer); searchTimer = setTimeout(function () { search(searchBox.value); }, 120); });
searchBox.addEventListener("keydown", function (ev) {
  if (ev.key !== "Enter") return;
  clearTimeout(searchTimer);
  if (match === null) search(searchBox.value);
  if (!matchList.length) return;
  matchAt = (matchAt + (ev.shiftKey ? -1 : 1) + matchList.length) % matchList.length;
  const i = matchList[matchAt];
  reveal(i); selectBar(i);
  matchesEl.textContent = (matchAt + 1) + " of " + matchList.length;
});

// --- filter and sort the lanes ------------------------------------------------------
const filterBox = document.getElementById("filter"), sortBox = document.getElementById("sort");
const RANK = ["failed", "caught", "expected", "cancelled", "pending", "incomplete", "abandoned", "resolved"];
const outcomeRank = OUT.map(function (o) { const r = RANK.indexOf(o); return r < 0 ? RANK.length : r; });
function laneKey(l) {
  const b = D.lanes[l].bar;
  if (b < 0) return [1, 0];  // futures outside any task: always last
  if (sortKey === "start") return [0, start[b]];
  if (sortKey === "duration") return [0, -(end[b] - start[b])];
  if (sortKey === "outcome") return [0, outcomeRank[outc[b]] * 1e18 + start[b]];
  return [0, l];
}
function arrange(keepScroll) {
  let shown = [];
  if (filterMode === "all" && sortKey === "group") {
    keep = null;
    for (let g = 0; g < NG; g++) {
      shown.push(L + g);
      if (groupOpen[g]) for (const l of G[g].lanes) shown.push(l);
    }
  } else if (filterMode === "all") {
    keep = null;
    for (let l = 0; l < L; l++) shown.push(l);
  } else {
    const code = OUT.indexOf(filterMode), hit = new Uint8Array(L);
    keep = new Uint8Array(N);
    for (let i = 0; i < N; i++) if (outc[i] === code) { keep[i] = 1; hit[lane[i]] = 1; }
    for (let l = 0; l < L; l++) if (hit[l]) shown.push(l);
  }
  if (sortKey !== "tree" && sortKey !== "group") {
    const keys = new Map(shown.map(function (l) { return [l, laneKey(l)]; }));
    shown.sort(function (a, b) { const x = keys.get(a), y = keys.get(b); return x[0] - y[0] || x[1] - y[1] || a - b; });
  }
  LV = shown.length;
  order = Int32Array.from(shown);
  layout();
  if (!keepScroll) scrollY = 0;
  clampView(); redraw();
  return LV;
}
function toggleGroup(g, open) {
  groupOpen[g] = open === undefined ? 1 - groupOpen[g] : open ? 1 : 0;
  arrange(true);
}
function setFilter(mode) { filterMode = OUT.indexOf(mode) >= 0 ? mode : "all"; filterBox.value = filterMode; return arrange(); }
function setSort(key) {
  sortKey = ["start", "duration", "outcome"].indexOf(key) >= 0 || (grouped && key === "group") ? key : "tree";
  sortBox.value = sortKey; return arrange();
}
if (grouped) {  // a server: its requests by route first, the background folded
  const option = el("option", "by request");
  option.value = "group";
  sortBox.prepend(option);
  sortBox.value = "group";
}
filterBox.addEventListener("change", function () { setFilter(filterBox.value); });
sortBox.addEventListener("change", function () { setSort(sortBox.value); });

// --- the label column: drag its edge to resize, hover a label to read it whole ----------
let resizing = false;
function nearEdge(x) { return Math.abs(x - GUTTER) <= 4; }
function setGutter(px) { GUTTER = Math.round(Math.min(Math.max(px, 80), Math.max(120, W - 120))); clampView(); redraw(); return GUTTER; }
function laneAt(y) {
  if (y < AXIS_H) return -1;
  const p = firstLaneAt(y - AXIS_H + scrollY);
  return p < LV ? order[p] : -1;
}
view.addEventListener("mousedown", function (ev) {
  const box = canvas.getBoundingClientRect();
  if (nearEdge(ev.clientX - box.left)) { resizing = true; view.classList.add("resizing"); ev.stopImmediatePropagation(); }
}, true);
window.addEventListener("mousemove", function (ev) {
  if (!resizing) return;
  setGutter(ev.clientX - canvas.getBoundingClientRect().left);
  ev.stopImmediatePropagation();
}, true);
window.addEventListener("mouseup", function () { if (resizing) { resizing = false; view.classList.remove("resizing"); } }, true);
view.addEventListener("click", function (ev) {  // a group's label folds and unfolds it
  const box = canvas.getBoundingClientRect(), x = ev.clientX - box.left, l = laneAt(ev.clientY - box.top);
  if (x >= GUTTER || nearEdge(x) || l < L) return;
  toggleGroup(l - L);
  ev.stopImmediatePropagation();
}, true);
view.addEventListener("mousemove", function (ev) {
  const box = canvas.getBoundingClientRect(), x = ev.clientX - box.left, y = ev.clientY - box.top;
  view.classList.toggle("at-edge", nearEdge(x));
  if (resizing || x >= GUTTER) return;
  const l = laneAt(y);
  if (l < 0) { tooltip.hidden = true; return; }
  if (l >= L) {
    const info = G[l - L];
    tooltip.textContent = [info.label, groupText(l - L), info.site >= 0 ? "created at " + S[info.site] : "",
      groupOpen[l - L] ? "click to fold" : "click to unfold"].filter(Boolean).join("\n");
  } else {
    const info = D.lanes[l], b = info.bar;
    const where = b < 0 ? "" : programIdx[b] >= 0 ? S[programIdx[b]] + "\nvia " + S[siteIdx[b]] : siteIdx[b] >= 0 ? S[siteIdx[b]] : "";
    tooltip.textContent = info.label + (where ? "\n" + where : "");
  }
  tooltip.hidden = false;
  tooltip.style.left = Math.min(x + 14, Math.max(0, W - tooltip.offsetWidth - 4)) + "px";
  tooltip.style.top = Math.min(y + 16, Math.max(0, H - tooltip.offsetHeight - 4)) + "px";
  ev.stopImmediatePropagation();
}, true);

const meta = D.meta, counts = meta.counts;
document.getElementById("meta").textContent = [
  meta.argv.length ? meta.argv.join(" ") : meta.path,
  meta.pid !== null && meta.pid !== undefined ? "pid " + meta.pid : "",
  meta.python ? "Python " + meta.python : "",
  meta.wall_start ? meta.wall_start.replace("T", " ").slice(0, 23) + " UTC" : "",
  fmtDur(meta.duration),
  N + " futures and tasks in " + L + " lanes" + (NG ? " and " + NG + " groups" : ""),
  meta.not_shown_whole ? meta.not_shown_whole + " more untraced, dropped or incomplete" : "",
].filter(Boolean).join(" \u00b7 ");
document.getElementById("meta").title = meta.path;
const legend = document.getElementById("legend");
OUT.forEach(function (o, k) {
  if ((o === "expected" || o === "caught") && !counts[o]) return;
  const item = el("span", (NAMES[o] || o) + " " + counts[o]);
  item.style.setProperty("--swatch", outColor[k]);
  legend.append(item);
});
legend.append(el("span", "pale: a task's life \u00b7 arrow: a wake-up", "pale"));

resetView();
if (grouped) arrange();
new ResizeObserver(resize).observe(view);
resize();
window.tracedfuture = {
  ready: true, readyMs: performance.now(), total: N, lanes: L, details: details,
  get bars() { return stats.bars; }, get rects() { return stats.rects; }, get arrows() { return stats.arrows; },
  get frameMs() { return stats.frameMs; }, get selected() { return selected >= 0 ? ids[selected] : null; },
  select: function (id) { const i = barById.get(id); if (i === undefined) return false; reveal(i); selectBar(i); return true; },
  locate: function (id) {
    const i = barById.get(id);
    if (i === undefined) return null;
    reveal(i); draw();
    const box = canvas.getBoundingClientRect(), x0 = Math.max(GUTTER, xOf(start[i])), x1 = Math.min(W, xOf(end[i]));
    return { x: box.left + (x0 + Math.max(x1, x0 + 1)) / 2, y: box.top + barY(i) + ROW_H / 2 };
  },
  search: function (text) { searchBox.value = text; return search(text); },
  filter: setFilter, sort: setSort, setGutter: setGutter,
  get gutter() { return GUTTER; }, get lanesShown() { return LV; },
  laneOrder: function () { return Array.from(order, function (l) { return l >= L ? "group " + G[l - L].label : D.lanes[l].task; }); },
  labelShown: function (taskId) {
    for (const [l, text] of shownLabels) if (l < L && D.lanes[l].task === taskId) return text;
    return null;
  },
  groups: function () {  // each group as shown: its label, kind, whether open, and its label's client point
    const box = canvas.getBoundingClientRect();
    return G.map(function (g, k) {
      return { label: g.label, kind: g.kind, open: !!groupOpen[k], tasks: g.tasks, shown: pos[L + k] >= 0,
        x: box.left + 40, y: box.top + laneY(L + k) + LANE_PAD + ROW_H / 2 };
    });
  },
  programBars: function (text) {  // ids of the bars a library made from a program line containing text
    const out = [];
    for (let i = 0; i < N; i++) if (programIdx[i] >= 0 && S[programIdx[i]].indexOf(text) >= 0) out.push(ids[i]);
    return out;
  },
  toggleGroup: function (label, open) {
    const k = G.findIndex(function (g) { return g.label === label; });
    if (k < 0) return false;
    toggleGroup(k, open); draw(); return true;
  },
  // The bars of an outcome drawn in view, folded groups' summaries included, as client points.
  drawnBars: function (outcome) {
    const code = OUT.indexOf(outcome), box = canvas.getBoundingClientRect(), out = [];
    function add(i, y) {
      if (outc[i] !== code || end[i] < t0 || start[i] > t1 || y < AXIS_H || y > H) return;
      const x0 = Math.max(GUTTER, xOf(start[i])), x1 = Math.max(x0 + (PROBLEM[code] ? 3 : 1), Math.min(W, xOf(end[i])));
      out.push({ id: ids[i], task: !!isTask[i], x: box.left + (x0 + x1) / 2, y: box.top + y });
    }
    for (let p = 0; p < LV; p++) {
      const l = order[p];
      if (l >= L) {
        if (!groupOpen[l - L]) summary[l - L].forEach(function (list, r) { for (const i of list) add(i, laneY(l) + LANE_PAD + r * ROW_H + ROW_H / 2); });
      } else {
        for (let r = 0; r < laneRows[l]; r++) {
          const a = rowFirst.get(l * 64 + r);
          if (a !== undefined) for (let i = a; i < rowEnd.get(l * 64 + r); i++) add(i, barY(i) + ROW_H / 2);
        }
      }
    }
    return out;
  },
  labelPoint: function (taskId) {  // client coordinates of a lane's label
    for (let p = 0; p < LV; p++) if (order[p] < L && D.lanes[order[p]].task === taskId) {
      const box = canvas.getBoundingClientRect();
      return { x: box.left + 40, y: box.top + laneY(order[p]) + LANE_PAD + ROW_H / 2 };
    }
    return null;
  },
  tooltip: tooltip,
  draw: function () { draw(); return stats.frameMs; },
};
})();
