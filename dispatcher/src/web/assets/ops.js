// The operator's dashboard: the live fleet on the map (robots by state, shops, open orders' drop-offs, closed
// sidewalks), linked to the tables; alerts to acknowledge; pause and resume; close or open a sidewalk by
// clicking it; move an order to another robot; register shops and robots and issue tokens; today's figures.
import { t, langSwitch } from "/static/i18n.js";
import { el, clear, api, session, signOut, live, noteServerNow, fmtTime, fmtNum, errText, statusText } from "/static/common.js";
import { MapView } from "/static/map.js";

const app = document.getElementById("app");
// The feed sends positions as [lat, lon].
const ll = (p) => ({ lat: p[0], lon: p[1] });
const COLORS = { offline: "#7f8c8d", faulted: "#c0392b", paused: "#e67e22", charging: "#f1c40f", working: "#2471a3", idle: "#27ae60" };
const S = { moving: null, fleet: null, error: "", notice: "", edgeTool: false, pending: null, selected: null };
const banner = el("div", { class: "banner warn", hidden: true }, t("live.lost"));
const map = new MapView({ onClick: clickMap });
let fitted = false;

// The robot drawn nearest a click, within 14 pixels.
function robotAt(lat, lon) {
  const [px, py] = map.toXY(lat, lon);
  let best = null;
  for (const r of S.fleet.robots.filter((r) => r.pos)) {
    const [x, y] = map.toXY(r.pos[0], r.pos[1]);
    const d = Math.hypot(x - px, y - py);
    if (d < 14 && (!best || d < best.d)) best = { id: r.id, d };
  }
  return best && best.id;
}

async function clickMap(lat, lon) {
  if (!S.fleet) return;
  if (!S.edgeTool) {
    // A robot clicked on the map is selected in the table (and the table row centres the map).
    const id = robotAt(lat, lon);
    if (id) {
      S.selected = id;
      renderLive();
      document.querySelector(`#robots tr[data-robot-id="${CSS.escape(id)}"]`)?.scrollIntoView({ block: "nearest" });
    }
    return;
  }
  const e = map.nearestEdge(lat, lon);
  if (!e || e.d > 15) return;
  const closed = S.fleet.closed.some(([a, b]) => (a === e.a && b === e.b) || (a === e.b && b === e.a));
  map.highlight = [e.a, e.b];
  map.draw();
  const ask = t(closed ? "ops.edgeopen" : "ops.edgeclose", { a: e.a, b: e.b });
  // The confirmation is part of the page (no browser dialog), so it works on a tablet and in tests.
  S.pending = { a: e.a, b: e.b, closed, ask };
  renderLive();
}

async function applyEdge() {
  const p = S.pending;
  S.pending = null;
  map.highlight = null;
  const r = await api("POST", `/api/ops/edges/${p.closed ? "open" : "close"}`, { from: p.a, to: p.b });
  if (r.ok) {
    if (p.closed) S.fleet.closed = S.fleet.closed.filter(([a, b]) => !((a === p.a && b === p.b) || (a === p.b && b === p.a)));
    else S.fleet.closed.push([Math.min(p.a, p.b), Math.max(p.a, p.b)]);
    map.setClosed(S.fleet.closed);
  } else S.error = errText(r);
  renderLive();
}

async function post(path, body, after) {
  S.error = "";
  const r = await api("POST", path, body);
  if (!r.ok) S.error = errText(r);
  else if (after) after(r.data);
  renderLive();
  return r;
}

function robotRow(r) {
  return el("tr", { dataset: { robotId: r.id, state: r.state }, class: S.selected === r.id ? "sel" : "",
    onclick: () => { S.selected = r.id; if (r.pos) map.fitPoints([ll(r.pos)], 0.003); renderLive(); } },
    el("td", {}, el("span", { class: "dot", style: undefined, dataset: { state: r.state } }), r.id, r.name ? ` (${r.name})` : ""),
    el("td", { class: "state" }, t("state." + r.state), r.fault ? ` — ${r.fault}` : ""),
    el("td", {}, fmtNum(r.battery, 0) + " %"),
    el("td", {}, r.on_board.join(", ")),
    el("td", {}, r.paused
      ? el("button", { type: "button", class: "resume", onclick: (e) => { e.stopPropagation(); post(`/api/ops/robots/${encodeURIComponent(r.id)}/resume`); } }, t("ops.resume"))
      : el("button", { type: "button", class: "pause", onclick: (e) => { e.stopPropagation(); post(`/api/ops/robots/${encodeURIComponent(r.id)}/pause`); } }, t("ops.pause"))));
}

// At most this many open orders in the table (the soonest due first); the map shows all of them.
const ORDER_ROWS = 100;

// At most this many robots in the table: the selected one, then those that need an operator (faulted, offline,
// paused, low battery), then the rest; the map shows all of them.
const ROBOT_ROWS = 100;
const ATTENTION = { faulted: 0, offline: 1, paused: 2, charging: 3, working: 4, idle: 5 };

function robotRows(robots) {
  const rank = (r) => (r.id === S.selected ? -1 : ATTENTION[r.state] ?? 6) * 1000 + Math.min(r.battery, 999);
  return [...robots].sort((a, b) => rank(a) - rank(b) || a.id.localeCompare(b.id)).slice(0, ROBOT_ROWS);
}

function orderRow(o, robots) {
  let move;
  if (S.moving === o.id) {
    const sel = el("select", { "aria-label": t("ops.reassign") },
      robots.filter((r) => r.id !== o.robot && r.state !== "offline").map((r) => el("option", { value: r.id }, r.id)));
    move = [sel, el("button", { type: "button", class: "primary", onclick: () => {
      S.moving = null;
      post(`/api/ops/orders/${encodeURIComponent(o.id)}/reassign`, { robot: sel.value });
    } }, "OK")];
  } else {
    move = el("button", { type: "button", class: "move", onclick: () => { S.moving = o.id; renderLive(); } }, t("ops.reassign"));
  }
  return el("tr", { dataset: { orderId: o.id, status: o.status }, class: o.late ? "late" : "" },
    el("td", {}, o.id), el("td", {}, o.shop), el("td", {}, statusText(o.status)), el("td", {}, o.robot),
    el("td", {}, fmtTime(o.eta)), el("td", {}, fmtTime(o.due)), el("td", {}, move));
}

function ordersView(f) {
  const rows = [...f.orders].sort((a, b) => (a.due || 0) - (b.due || 0)).slice(0, ORDER_ROWS);
  return el("section", { class: "card", id: "open-orders" },
    el("h2", {}, t("ops.orders"), " ", el("span", { class: "badge" }, fmtNum(f.orders.length))),
    el("table", {},
      el("thead", {}, el("tr", {}, ["col.order", "ops.shops", "col.status", "col.robot", "shop.etadrop", "col.deliverby", "col.actions"]
        .map((k) => el("th", {}, t(k, { time: "" }))))),
      el("tbody", {}, rows.map((o) => orderRow(o, f.robots)))),
    f.orders.length > ORDER_ROWS && el("p", { class: "muted" }, t("ops.more", { shown: ORDER_ROWS, n: f.orders.length })));
}

function alertsView(f) {
  return el("section", { class: "card", id: "alerts" }, el("h2", {}, t("ops.alerts"), " ", el("span", { class: "badge" }, f.alerts.length)),
    f.alerts.length ? el("ul", {}, f.alerts.map((a) => el("li", { dataset: { alertId: a.id } },
      el("span", { class: "muted" }, fmtTime(a.raised_at)), " ", a.robot ? el("strong", {}, a.robot + ": ") : "", a.message, " ",
      el("button", { type: "button", class: "ack", onclick: () => post(`/api/ops/alerts/${a.id}/ack`, undefined,
        () => { f.alerts = f.alerts.filter((x) => x.id !== a.id); }) }, t("ops.ack")))))
      : el("p", { class: "muted" }, t("ops.noalerts")));
}

function todayView(f) {
  const d = f.today;
  const cell = (k, v) => el("div", { class: "fig" }, el("span", {}, t(k)), el("strong", {}, v));
  const ontime = d.delivered ? fmtNum((100 * d.delivered_on_time) / d.delivered, 1) + " %" : "–";
  return el("section", { class: "card figs", id: "today" }, el("h2", {}, t("ops.today")),
    cell("ops.placed", fmtNum(d.placed)), cell("ops.delivered", fmtNum(d.delivered)), cell("ops.ontime", ontime),
    cell("ops.lost", fmtNum(d.cancelled_or_failed)), cell("ops.open", fmtNum(d.open)));
}

function adminView() {
  const v = (id) => document.getElementById(id).value;
  const shown = (d) => { S.notice = t("ops.token", { token: d.token }); };
  const reg = (kind) => el("form", { class: "row", id: "reg-" + kind, onsubmit: (e) => {
    e.preventDefault();
    post(`/api/ops/${kind}s`, { id: v(kind + "-id"), name: v(kind + "-name"), lat: +v(kind + "-lat"), lon: +v(kind + "-lon") }, shown);
  } },
  el("strong", {}, t(kind === "shop" ? "ops.regshop" : "ops.regrobot")),
  el("input", { id: kind + "-id", placeholder: t("ops.id"), required: true }),
  el("input", { id: kind + "-name", placeholder: t("ops.name") }),
  el("input", { id: kind + "-lat", type: "number", step: "0.000001", placeholder: t("shop.lat"), required: true }),
  el("input", { id: kind + "-lon", type: "number", step: "0.000001", placeholder: t("shop.lon"), required: true }),
  el("button", { type: "submit" }, "+"));
  const issue = el("form", { class: "row", id: "issue", onsubmit: (e) => {
    e.preventDefault();
    post("/api/ops/tokens", { role: v("tok-role"), subject: v("tok-subject") }, shown);
  } },
  el("strong", {}, t("ops.issue")),
  el("select", { id: "tok-role", "aria-label": t("ops.role") }, ["shop", "robot", "operator"].map((r) => el("option", { value: r }, r))),
  el("input", { id: "tok-subject", placeholder: t("ops.subject") }),
  el("button", { type: "submit" }, "+"));
  return el("details", { class: "card", id: "admin" }, el("summary", {}, t("ops.admin")), reg("shop"), reg("robot"), issue,
    S.notice && el("p", { class: "notice", id: "notice" }, S.notice));
}

const live_ = el("div", { id: "live" });
let adminBox = null;

function renderLive() {
  const f = S.fleet;
  if (!f) return;
  const markers = [
    ...f.shops.map((s) => ({ ...s.pos, kind: "shop", color: "#7d3c98", label: s.name || s.id })),
    ...f.orders.filter((o) => o.dropoff).map((o) => ({ ...ll(o.dropoff), kind: "dropoff", color: "#1e8449" })),
    ...f.robots.filter((r) => r.pos).map((r) => ({ ...ll(r.pos), kind: "robot", color: COLORS[r.state], label: r.id })),
  ];
  map.setMarkers(markers);
  map.setClosed(f.closed);
  if (!fitted && map.map) {
    map.fitPoints(markers.filter((m) => m.kind !== "dropoff"), 0.01);
    fitted = true;
  }
  clear(live_).append(
    S.error && el("p", { class: "error", role: "alert", id: "error" }, S.error),
    el("div", { class: "row" },
      el("label", { class: "toggle" }, el("input", { type: "checkbox", id: "edge-tool", checked: S.edgeTool,
        onchange: (e) => { S.edgeTool = e.target.checked; S.pending = null; map.highlight = null; renderLive(); } }), t("ops.edgetool")),
      el("span", { class: "muted", id: "closed-count", dataset: { n: f.closed.length } }, t("ops.closed", { n: f.closed.length }))),
    S.pending && el("div", { class: "confirm", id: "edge-confirm" }, S.pending.ask, " ",
      el("button", { type: "button", id: "edge-yes", class: "primary", onclick: applyEdge }, "OK"),
      el("button", { type: "button", onclick: () => { S.pending = null; map.highlight = null; map.draw(); renderLive(); } }, "×")),
    todayView(f),
    alertsView(f),
    el("section", { class: "card", id: "robots" }, el("h2", {}, t("ops.robots"), " ", el("span", { class: "badge" }, fmtNum(f.robots.length))),
      el("table", {}, el("thead", {}, el("tr", {}, ["col.robot", "col.state", "col.battery", "col.carrying", "col.actions"].map((k) => el("th", {}, t(k))))),
        el("tbody", {}, robotRows(f.robots).map(robotRow))),
      f.robots.length > ROBOT_ROWS && el("p", { class: "muted" }, t("ops.morerobots", { shown: ROBOT_ROWS, n: f.robots.length }))),
    ordersView(f),
  );
}

function render() {
  adminBox = adminView();
  clear(app).append(
    el("header", { class: "bar" }, el("strong", {}, t("ops.title")), langSwitch(render),
      el("button", { type: "button", id: "sign-out", onclick: signOut }, t("signout"))),
    banner,
    el("div", { class: "cols" }, el("div", {}, map.root, adminBox), live_),
  );
  renderLive();
  map.draw();
}

async function start() {
  const s = await session();
  if (!s || s.role !== "operator") {
    location.href = "/";
    return;
  }
  render();
  live("/api/ops/events", {
    fleet: (f) => {
      noteServerNow(f.now);
      S.fleet = f;
      // Keep the admin form (and what is typed in it) across updates; refresh its notice only.
      const n = document.getElementById("notice");
      if (S.notice && !n) render();
      else renderLive();
    },
    ended: () => (location.href = "/"),
  }, banner);
}

start();
