// Butler dashboard: vanilla JS, no dependencies. Reads /dashboard/api/*, renders with DOM and SVG,
// and refreshes when the event stream says the ledger changed (polling with ETag when it cannot stream).
"use strict";

const API = "/dashboard/api/";
const SVGNS = "http://www.w3.org/2000/svg";
const PALETTE = ["#2563eb", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#ea580c", "#4f46e5", "#0d9488"];
const STATUS_COLOUR = {
  success: "#16a34a", failed: "#dc2626", timeout: "#dc2626", cancelled: "#9ca3af", running: "#d97706", pending: "#9ca3af",
};

const state = { snapshot: null, history: null, metric: "tokens", group: "providers", etags: {}, version: null };

// ---- small helpers ---------------------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  setAttrs(el, attrs);
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}
function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.setAttribute("class", v);
    else if (k === "text") el.textContent = v;
    else if (k === "style") el.style.cssText = v; // CSSOM, which the page's CSP (no inline styles) allows
    else el.setAttribute(k, v);
  }
}
const fmtInt = (n) => Math.round(n).toLocaleString("en-US");
function fmtCost(x) {
  if (x === null || x === undefined) return "–";
  const v = Number(x);
  return "$" + v.toLocaleString("en-US", { minimumFractionDigits: v !== 0 && Math.abs(v) < 1 ? 4 : 2,
    maximumFractionDigits: v !== 0 && Math.abs(v) < 1 ? 4 : 2 });
}
function fmtUsd(x) { return x === null || x === undefined ? "–" : Number(x).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }) + " USDC"; }
function compact(n) {
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(1).replace(/\.0$/, "") + "B";
  if (a >= 1e6) return (n / 1e6).toFixed(1).replace(/\.0$/, "") + "M";
  if (a >= 1e3) return (n / 1e3).toFixed(1).replace(/\.0$/, "") + "k";
  return String(Math.round(n * 100) / 100);
}
function hhmm(iso) {
  const d = new Date(iso);
  return d.toISOString().slice(11, 16) + " UTC";
}
function when(iso) {
  const d = new Date(iso);
  const today = state.snapshot ? state.snapshot.day : "";
  const day = d.toISOString().slice(0, 10);
  return day === today ? hhmm(iso) : day.slice(5) + " " + hhmm(iso);
}
function pct(part, whole) { return whole > 0 ? Math.max(0, Math.min(100, (100 * part) / whole)) : 0; }
function num(value, text, field) { return h("b", { "data-field": field, "data-value": value }, text); }
function empty(text) { return h("div", { class: "empty" }, text); }
function colourOf(names) { const m = {}; names.forEach((n, i) => { m[n] = PALETTE[i % PALETTE.length]; }); return m; }
function replace(id, ...nodes) {
  const el = document.getElementById(id);
  el.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined));
  return el;
}

// A capacity bar: used (solid), reserved (striped), and a tick at the rotation threshold.
function capacityBar(used, reserved, capacity, ratio, resting) {
  const u = pct(used, capacity), r = pct(reserved, capacity - used > 0 ? capacity : capacity);
  const load = pct(used + reserved, capacity);
  let cls = "bar";
  if (load >= 90) cls += " bad"; else if (load >= ratio * 100) cls += " warn";
  if (resting) cls += " rest";
  return h("div", { class: cls, role: "img", "aria-label": `${fmtInt(used)} used, ${fmtInt(reserved)} reserved of ${fmtInt(capacity)}` },
    h("div", { class: "fill", style: `width:${u}%` }),
    h("div", { class: "fill res", style: `left:${u}%;width:${Math.min(r, 100 - u)}%` }),
    h("div", { class: "tick", style: `left:calc(${ratio * 100}% - 1px)`, title: `${Math.round(ratio * 100)}% threshold` }));
}

// ---- sections ------------------------------------------------------------------------------------------------
function renderSummary(snap) {
  const t = snap.total;
  const load = pct(t.used_today + t.reserved, t.total_capacity);
  const card = (label, field, value, text, cls) => h("div", { class: "card " + (cls || ""), "data-card": field },
    h("span", {}, label), num(value, text, field));
  replace("summary",
    card("Capacity today", "total_capacity", t.total_capacity, fmtInt(t.total_capacity)),
    card("Used", "used_today", t.used_today, fmtInt(t.used_today), load >= 90 ? "bad" : load >= snap.threshold_ratio * 100 ? "warn" : ""),
    card("Reserved", "reserved", t.reserved, fmtInt(t.reserved)),
    card("Remaining", "remaining", t.remaining, fmtInt(t.remaining), t.remaining === 0 ? "bad" : "ok"),
    card("Cost today", "cost_today", t.cost_today, fmtCost(t.cost_today)),
    card("Open sessions", "open_sessions", snap.open_sessions, fmtInt(snap.open_sessions)),
    card("Pending alerts", "pending_alerts", snap.alerts.length, fmtInt(snap.alerts.length), snap.alerts.length ? "warn" : ""));
  document.getElementById("day").textContent = snap.day + " (UTC)";
  document.getElementById("reset").textContent = "counters start again at 00:00 UTC";
  document.getElementById("threshold-label").textContent = `${Math.round(snap.threshold_ratio * 100)}% threshold`;
}

function renderProviders(snap) {
  const names = Object.keys(snap.providers);
  if (!names.length) { replace("providers", empty("No keys configured.")); return; }
  replace("providers", names.map((name) => {
    const p = snap.providers[name];
    return h("div", { class: "provider", "data-provider": name },
      h("div", { class: "name" }, h("span", {}, name), h("span", { class: "muted" }, `${p.keys} key${p.keys === 1 ? "" : "s"}`)),
      capacityBar(p.used_today, p.reserved, p.total_capacity, snap.threshold_ratio, false),
      h("div", { class: "figs" },
        h("div", {}, h("span", {}, "used"), num(p.used_today, fmtInt(p.used_today), "used_today")),
        h("div", {}, h("span", {}, "reserved"), num(p.reserved, fmtInt(p.reserved), "reserved")),
        h("div", {}, h("span", {}, "remaining"), num(p.remaining, fmtInt(p.remaining), "remaining")),
        h("div", {}, h("span", {}, "capacity"), num(p.total_capacity, fmtInt(p.total_capacity), "total_capacity")),
        h("div", {}, h("span", {}, "cost today"), num(p.cost_today, fmtCost(p.cost_today), "cost_today")),
        h("div", {}, h("span", {}, "load"), h("b", {}, Math.round(pct(p.used_today + p.reserved, p.total_capacity)) + "%"))));
  }));
}

function renderKeys(snap) {
  if (!snap.keys.length) { replace("keys", empty("No enabled keys.")); return; }
  replace("keys", snap.keys.map((k) => {
    let badge = null;
    if (k.resting === "parked") badge = h("span", { class: "badge parked", title: k.resting_reason || "" }, `parked until ${when(k.resting_until)}`);
    else if (k.resting === "cooldown") badge = h("span", { class: "badge rest", title: k.resting_reason || "" }, `resting until ${when(k.resting_until)} · ${k.resting_reason}`);
    else if (k.used + k.reserved >= k.threshold) badge = h("span", { class: "badge warn" }, "past threshold");
    return h("div", { class: "key", "data-key": k.key_id },
      h("div", {}, h("div", { class: "id" }, k.key_id, badge), h("div", { class: "sub" }, `${k.provider} · ${k.model} · ${k.scope}`)),
      capacityBar(k.used, k.reserved, k.capacity, snap.threshold_ratio, !!k.resting),
      h("div", { class: "nums" },
        h("span", {}, num(k.used, fmtInt(k.used), "used"), " / ", num(k.capacity, fmtInt(k.capacity), "capacity")),
        h("span", {}, "held ", num(k.reserved, fmtInt(k.reserved), "reserved")),
        h("span", {}, "left ", num(k.remaining, fmtInt(k.remaining), "remaining")),
        h("span", {}, num(k.cost, fmtCost(k.cost), "cost"))));
  }));
}

function renderChart() {
  const hist = state.history;
  if (!hist) return;
  const series = hist[state.group];
  const names = Object.keys(series);
  const colours = colourOf(names);
  const days = hist.days;
  // Drawn at the container's own pixel width, so axis text stays legible on a phone.
  const W = Math.max(300, Math.round(document.getElementById("chart").clientWidth || 900));
  const H = W < 600 ? 220 : 260, L = 46, R = 8, T = 12, B = 28;
  const labelEvery = W < 600 ? 10 : 5;
  const totals = days.map((_, i) => names.reduce((a, n) => a + series[n][state.metric][i], 0));
  const max = Math.max(...totals, 0);
  const top = niceMax(max);
  const bw = (W - L - R) / days.length;
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "data-metric": state.metric, "data-group": state.group,
    "aria-label": `${state.metric} per day, last ${days.length} days, ${state.group === "keys" ? "by key" : "by provider"}` });
  for (let g = 0; g <= 4; g++) {
    const v = (top * g) / 4;
    svg.append(s("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    svg.append(s("text", { class: "axis", x: L - 6, y: y(v) + 3, "text-anchor": "end" },
      state.metric === "cost" ? "$" + compact(v) : compact(v)));
  }
  days.forEach((day, i) => {
    let base = 0;
    const x = L + i * bw + bw * 0.16;
    for (const n of names) {
      const v = series[n][state.metric][i];
      if (v > 0) {
        const rect = s("rect", { class: "seg-bar", x: x.toFixed(2), width: (bw * 0.68).toFixed(2), y: y(base + v).toFixed(2),
          height: Math.max(0.5, y(base) - y(base + v)).toFixed(2), rx: 2, fill: colours[n],
          "data-day": day, "data-series": n, "data-value": v });
        rect.append(s("title", {}, `${day} · ${n}: ${state.metric === "cost" ? fmtCost(v) : fmtInt(v) + " tokens"}`));
        svg.append(rect);
      }
      base += v;
    }
    if ((days.length - 1 - i) % labelEvery === 0) {
      svg.append(s("text", { class: "axis", x: L + i * bw + bw / 2, y: H - 10, "text-anchor": "middle" }, day.slice(5)));
    }
  });
  if (max === 0) svg.append(s("text", { class: "axis", x: W / 2, y: H / 2, "text-anchor": "middle" }, "nothing recorded in the last 30 days"));
  replace("chart", svg);
  replace("chart-legend", names.map((n) => {
    const sum = series[n][state.metric].reduce((a, b) => a + b, 0);
    return h("span", { class: "item" }, h("i", { style: `background:${colours[n]}` }), `${n} `,
      h("b", {}, state.metric === "cost" ? fmtCost(sum) : fmtInt(sum)));
  }));
}
function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function spendTable(rows, what) {
  if (!rows.length) return empty(`No ${what} in the last 30 days.`);
  return h("div", { class: "scroll" }, spendRows(rows, what));
}
function spendRows(rows, what) {
  const maxCost = Math.max(...rows.map((r) => r.cost), 0);
  const maxUsed = Math.max(...rows.map((r) => r.used), 0);
  return h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, what === "tasks" ? "task" : "label"), h("th", { class: "n" }, "sessions"),
      h("th", { class: "n" }, "tokens"), h("th", { class: "n" }, "cost"), h("th", { style: "width:22%" }, ""))),
    h("tbody", {}, rows.map((r) => h("tr", { "data-name": r.name },
      h("td", {}, r.name || h("span", { class: "muted" }, "(no label)"), r.task_id ? h("div", { class: "muted small" }, r.task_id) : null),
      h("td", { class: "n" }, fmtInt(r.sessions)),
      h("td", { class: "n", "data-field": "used", "data-value": r.used }, fmtInt(r.used)),
      h("td", { class: "n", "data-field": "cost", "data-value": r.cost }, fmtCost(r.cost)),
      h("td", {}, h("div", { class: "mini", style: `width:${maxCost > 0 ? pct(r.cost, maxCost) : pct(r.used, maxUsed)}%` }))))));
}

function renderSessions(snap) {
  document.getElementById("sessions-count").textContent = snap.open_sessions > snap.sessions.length
    ? `${snap.sessions.length} of ${snap.open_sessions} shown` : `${snap.open_sessions} open`;
  if (!snap.sessions.length) { replace("sessions", empty("No open sessions: nothing is held.")); return; }
  replace("sessions", h("table", {},
    h("thead", {}, h("tr", {}, ["session", "label", "key", "allocated", "used", "held", "threshold", "cost", "opened"].map((c, i) =>
      h("th", { class: i >= 3 && i <= 7 ? "n" : "" }, c)))),
    h("tbody", {}, snap.sessions.map((x) => h("tr", { "data-session": x.session_id },
      h("td", {}, h("code", {}, x.session_id)), h("td", {}, x.label || "–"), h("td", {}, x.key_id),
      h("td", { class: "n" }, fmtInt(x.allocated)),
      h("td", { class: "n" }, fmtInt(x.used), x.used >= x.rotation_threshold ? h("span", { class: "badge warn" }, "≥ threshold") : null),
      h("td", { class: "n", "data-field": "held", "data-value": x.held }, fmtInt(x.held)),
      h("td", { class: "n" }, fmtInt(x.rotation_threshold)), h("td", { class: "n" }, fmtCost(x.cost)),
      h("td", {}, when(x.created_at)))))));
}

function taskGraph(task) {
  const byStage = [];
  task.subtasks.forEach((st) => { (byStage[st.stage] = byStage[st.stage] || []).push(st); });
  const NW = 176, NH = 62, GX = 48, GY = 12, TOP = 18;
  const rows = Math.max(1, ...byStage.map((l) => (l ? l.length : 0)));
  const W = byStage.length * NW + (byStage.length - 1) * GX + 4, H = TOP + rows * NH + (rows - 1) * GY + 4;
  const pos = {};
  byStage.forEach((layer, si) => (layer || []).forEach((st, ri) => { pos[st.sub_task_id] = { x: 2 + si * (NW + GX), y: TOP + ri * (NH + GY) }; }));
  const svg = s("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `sub-task graph of ${task.name}` });
  byStage.forEach((_, si) => svg.append(s("text", { class: "stage", x: 2 + si * (NW + GX), y: 10 }, `stage ${si + 1}`)));
  for (const st of task.subtasks) for (const dep of st.depends_on) {
    const a = pos[dep], b = pos[st.sub_task_id];
    if (!a || !b) continue;
    const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2, mx = (x1 + x2) / 2;
    svg.append(s("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, "data-from": dep, "data-to": st.sub_task_id }));
  }
  for (const st of task.subtasks) {
    const p = pos[st.sub_task_id];
    const colour = STATUS_COLOUR[st.status] || "#9ca3af";
    const title = st.title.length > 24 ? st.title.slice(0, 23) + "…" : st.title;
    svg.append(s("g", { class: "node", "data-subtask": st.sub_task_id, "data-status": st.status, "data-tokens": st.tokens,
      "data-attempts": st.attempts, "data-key": st.key_id, transform: `translate(${p.x},${p.y})` },
      s("title", {}, `${st.sub_task_id}: ${st.title}`),
      s("rect", { width: NW, height: NH, rx: 8, fill: "#fff", stroke: colour }),
      s("rect", { width: 5, height: NH, rx: 2, fill: colour }),
      s("text", { class: "t", x: 12, y: 17 }, `${st.sub_task_id} · ${st.status}`),
      s("text", { x: 12, y: 33 }, title),
      s("text", { class: "s", x: 12, y: 50 }, `${fmtInt(st.tokens)} tok · ${st.attempts} att · ${st.key_id}`)));
  }
  return h("div", { class: "graph" }, svg);
}

function renderTasks(snap) {
  if (!snap.tasks.length) { replace("tasks", empty("No tasks yet: plan_agents or spawn_agent creates them.")); return; }
  replace("tasks", snap.tasks.map((t) => h("div", { class: "task", "data-task": t.task_id },
    h("div", { class: "head" },
      h("div", {}, h("b", {}, t.name), " ", h("span", { class: "muted" }, `${t.task_id} · ${t.mode} · ${when(t.created_at)}`)),
      h("div", { class: "agg" },
        h("span", {}, h("b", { "data-field": "successful" }, t.successful), "/", h("b", { "data-field": "total" }, t.total_sub_tasks), " succeeded"),
        t.failed ? h("span", { class: "badge failed" }, `${t.failed} failed`) : null,
        t.pending ? h("span", { class: "badge pending" }, `${t.pending} pending`) : null,
        h("span", {}, h("b", { "data-field": "total_tokens_used", "data-value": t.total_tokens_used }, fmtInt(t.total_tokens_used)), ` of ${fmtInt(t.budget)} tokens`),
        h("span", {}, h("b", {}, Math.round(t.success_rate * 100) + "%"), " success"))),
    taskGraph(t))));
}

function renderAlerts(snap) {
  replace("alerts", snap.alerts.length ? h("div", { class: "list" }, snap.alerts.map((a) => h("div", { class: "item-row", "data-alert": a.alert_id },
    h("span", { class: "when" }, when(a.created_at)),
    h("span", {}, h("span", { class: "badge " + (a.kind === "overrun" ? "bad" : "warn") }, a.kind.replace("_", " ")), " ", a.message))))
    : empty("No pending alerts."));
  replace("rotations", snap.rotations.length ? h("div", { class: "list" }, snap.rotations.map((e) => h("div", { class: "item-row", "data-rotation": e.seq },
    h("span", { class: "when" }, when(e.at)),
    h("span", {}, h("b", {}, e.data.from_key_id), h("span", { class: "arrow" }, " → "), h("b", {}, e.data.to_key_id), " ",
      h("span", { class: "badge" }, e.data.reason), " ",
      h("span", { class: "muted" }, `${fmtInt(e.data.moved_tokens || 0)} tokens moved`),
      e.data.cooldown_until ? h("span", { class: "muted" }, ` · ${e.data.from_key_id} rests until ${when(e.data.cooldown_until)}`) : null))))
    : empty("No rotations yet."));
}

function capLine(label, used, cap, field) {
  const u = Number(used), c = Number(cap);
  const p = pct(u, c);
  return h("div", { class: "cap", "data-cap": field },
    h("div", { class: "lbl" }, h("span", {}, label), h("span", {}, h("b", {}, fmtUsd(u)), ` of ${fmtUsd(c)}`)),
    h("div", { class: "bar" + (p >= 90 ? " bad" : p >= 75 ? " warn" : "") }, h("div", { class: "fill", style: `width:${p}%` })));
}

function renderTreasury(snap, live) {
  const t = live || snap.treasury;
  if (!t) { replace("treasury", empty(snap.treasury_error || "Treasury unavailable.")); return; }
  const wallet = t.wallet;
  const pending = snap.awaiting_approval;
  replace("treasury",
    h("div", { class: "treasury" },
      h("div", { class: "tbox", "data-box": "wallet" }, h("h3", {}, "Wallet"),
        wallet.usdc !== null ? h("div", { class: "big", "data-field": "usdc", "data-value": wallet.usdc }, fmtUsd(wallet.usdc))
          : h("div", { class: "muted" }, live ? (wallet.error || "no wallet configured") : "Balances are asked from Circle on request: use the button above."),
        h("div", { class: "muted note" }, `${t.network} · ${wallet.wallet_id || "no wallet id"}`),
        (wallet.balances || []).filter((b) => b.symbol !== "USDC").map((b) => h("div", { class: "small" }, `${b.amount} ${b.symbol} (${b.blockchain})`))),
      h("div", { class: "tbox", "data-box": "credits" }, h("h3", {}, "Credit per provider"),
        t.credits.length ? h("table", {}, h("tbody", {}, t.credits.map((c) => h("tr", { "data-credit": c.provider },
          h("td", {}, c.provider, h("div", { class: "muted small" }, c.source)),
          h("td", { class: "n" }, h("b", { "data-field": "remaining", "data-value": c.remaining }, c.remaining === null ? "–" : "$" + Number(c.remaining).toFixed(2)),
            h("div", { class: "muted small" }, c.remaining !== null && Number(c.remaining) < Number(c.threshold)
              ? h("span", { class: "badge warn" }, `below $${Number(c.threshold).toFixed(0)}`) : `top-up below $${Number(c.threshold).toFixed(0)}`))))))
          : empty("No providers in the treasury policy.")),
      h("div", { class: "tbox", "data-box": "caps" }, h("h3", {}, "Spend against caps"),
        capLine(`today (${t.spend.day})`, t.spend.sent_day, t.policy.caps.daily, "daily"),
        capLine(`this month (${t.spend.month})`, t.spend.sent_month, t.policy.caps.monthly, "monthly"),
        h("div", { class: "muted small" }, `per top-up at most ${fmtUsd(t.policy.caps.per_transaction)} · in flight ${fmtUsd(t.spend.in_flight)} · `,
          t.breaker.tripped ? h("span", { class: "badge bad" }, "breaker open") : `breaker ${t.breaker.consecutive_failures}/${t.breaker.max_consecutive_failures}`,
          t.policy.enabled ? "" : " · automatic top-ups off"))),
    h("h3", {}, `Awaiting approval (${pending.length})`),
    pending.length ? pending.map((i) => h("div", { class: "intent", "data-intent": i.intent_id },
      h("div", {}, h("b", {}, `${i.amount} USDC → ${i.provider}`), " ", h("span", { class: "muted" }, i.reason)),
      h("div", { class: "small muted" }, "approve in a terminal: ", h("code", {}, i.approve_command))))
      : empty("Nothing waits for a person."),
    t.recent.length ? h("h3", {}, "Recent top-ups") : null,
    t.recent.length ? h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "intent"), h("th", {}, "provider"), h("th", { class: "n" }, "amount"), h("th", {}, "state"), h("th", {}, "created"))),
      h("tbody", {}, t.recent.map((i) => h("tr", {}, h("td", {}, h("code", {}, i.id)), h("td", {}, i.provider),
        h("td", { class: "n" }, i.amount), h("td", {}, h("span", { class: "badge " + i.state }, i.state)), h("td", {}, when(i.created_at))))))) : null,
    t.warnings.length ? h("ul", { class: "warnings" }, t.warnings.map((w) => h("li", {}, w))) : null);
}

function render() {
  const snap = state.snapshot;
  if (!snap) return;
  renderSummary(snap);
  renderProviders(snap);
  renderKeys(snap);
  replace("spend-labels", spendTable(snap.spend_by_label, "labels"));
  replace("spend-tasks", spendTable(snap.spend_by_task, "tasks"));
  renderSessions(snap);
  renderTasks(snap);
  renderAlerts(snap);
  renderTreasury(snap, state.liveTreasury);
  renderChart();
  document.body.dataset.version = snap.version;
}

// ---- data and live updates -------------------------------------------------------------------------------------
async function getJSON(name) {
  const headers = {};
  if (state.etags[name]) headers["If-None-Match"] = state.etags[name];
  const res = await fetch(API + name, { headers, credentials: "same-origin", cache: "no-store" });
  if (res.status === 401) { window.location.assign("/dashboard"); return null; }
  if (res.status === 304) return null;
  if (!res.ok) throw new Error(`${name}: HTTP ${res.status}`);
  state.etags[name] = res.headers.get("ETag");
  return res.json();
}

let loading = null;
async function refresh() {
  if (loading) { loading.again = true; return; }
  loading = { again: false };
  try {
    const [snap, hist] = await Promise.all([getJSON("snapshot"), getJSON("history")]);
    if (snap) state.snapshot = snap;
    if (hist) state.history = hist;
    if (snap || hist) render();
  } catch (err) {
    setLive(false, "error");
  } finally {
    const again = loading.again;
    loading = null;
    if (again) refresh();
  }
}

function setLive(on, text) {
  const el = document.getElementById("live");
  el.classList.toggle("off", !on);
  document.getElementById("live-text").textContent = text;
}

let pollTimer = null;
function startPolling() {
  if (pollTimer) return;
  setLive(true, "polling");
  pollTimer = setInterval(refresh, 5000);
}
function connect() {
  if (!window.EventSource) { startPolling(); return; }
  const es = new EventSource(API + "events");
  let failures = 0;
  es.addEventListener("open", () => { failures = 0; setLive(true, "live"); });
  es.addEventListener("version", (ev) => {
    const v = JSON.parse(ev.data).version;
    if (v !== state.version) { state.version = v; refresh(); }
  });
  es.addEventListener("error", () => {
    failures += 1;
    setLive(false, "reconnecting");
    if (failures >= 5) { es.close(); startPolling(); }
  });
}

function wire() {
  document.querySelectorAll("[data-metric]").forEach((b) => b.addEventListener("click", () => {
    state.metric = b.dataset.metric;
    document.querySelectorAll("[data-metric]").forEach((x) => x.classList.toggle("on", x === b));
    renderChart();
  }));
  document.querySelectorAll("[data-group]").forEach((b) => b.addEventListener("click", () => {
    state.group = b.dataset.group;
    document.querySelectorAll("[data-group]").forEach((x) => x.classList.toggle("on", x === b));
    renderChart();
  }));
  const btn = document.getElementById("treasury-refresh");
  btn.addEventListener("click", async () => {
    btn.disabled = true;
    btn.textContent = "Asking…";
    try {
      const res = await fetch(API + "treasury/live", { credentials: "same-origin", cache: "no-store" });
      if (res.ok) { state.liveTreasury = await res.json(); render(); }
    } finally { btn.disabled = false; btn.textContent = "Ask Circle and providers"; }
  });
}

let resizeTimer = null;
window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(renderChart, 150); });
document.addEventListener("DOMContentLoaded", () => { wire(); refresh(); connect(); });
