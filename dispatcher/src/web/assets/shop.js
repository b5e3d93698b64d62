// The shop's page, made for a counter tablet: a new delivery (drop-off on the map, quote, place), today's orders
// live with a big "Ready" button, the PIN and the customer's link, a chime and a banner when a robot arrives,
// and the history with a CSV download.
import { t, langSwitch } from "/static/i18n.js";
import { el, clear, api, session, signOut, live, noteServerNow, serverNow, fmtTime, fmtDateTime, fmtIn,
  errText, statusText } from "/static/common.js";
import { MapView } from "/static/map.js";

const app = document.getElementById("app");
const S = {
  me: null,
  orders: new Map(),
  dropoff: null,
  form: { weight_g: 500, compartments: 1, ready_in: 0, deliver_by: "" },
  quote: null,
  placed: null,
  error: "",
  arrivals: [],
  tab: "today",
  history: null,
};
const banner = el("div", { class: "banner warn", hidden: true }, t("live.lost"));
const map = new MapView({
  onClick: (lat, lon) => {
    S.dropoff = { lat: +lat.toFixed(6), lon: +lon.toFixed(6) };
    S.quote = null;
    render();
  },
});
let audio = null;

// Links the shop was given, kept on this tablet only (the dispatcher keeps just their hashes).
function links() {
  try {
    return JSON.parse(localStorage.getItem("trundle.links." + S.me.id) || "{}");
  } catch {
    return {};
  }
}
function saveLink(id, link) {
  const l = links();
  l[id] = link;
  localStorage.setItem("trundle.links." + S.me.id, JSON.stringify(l));
}

function chime() {
  try {
    audio = audio || new AudioContext();
    const now = audio.currentTime;
    for (const [i, f] of [880, 1320].entries()) {
      const o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = f;
      g.gain.setValueAtTime(0.0001, now + i * 0.25);
      g.gain.exponentialRampToValueAtTime(0.4, now + i * 0.25 + 0.02);
      g.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.25 + 0.4);
      o.connect(g).connect(audio.destination);
      o.start(now + i * 0.25);
      o.stop(now + i * 0.25 + 0.45);
    }
  } catch {
    // No sound device: the banner still shows.
  }
}

function defaultDeliverBy() {
  const d = new Date(serverNow() + 45 * 60000);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

// "HH:MM" today (or tomorrow if already past) as Unix ms.
function timeToMs(hhmm) {
  const [h, m] = hhmm.split(":").map(Number);
  const d = new Date(serverNow());
  d.setHours(h, m, 0, 0);
  if (d.getTime() < serverNow() - 60000) d.setDate(d.getDate() + 1);
  return d.getTime();
}

function delivery() {
  const f = S.form;
  return {
    lat: S.dropoff ? S.dropoff.lat : NaN,
    lon: S.dropoff ? S.dropoff.lon : NaN,
    weight_g: Math.round(+f.weight_g),
    compartments: Math.round(+f.compartments),
    ready_at: +f.ready_in > 0 ? serverNow() + +f.ready_in * 60000 : undefined,
    deliver_by: timeToMs(f.deliver_by || defaultDeliverBy()),
  };
}

async function quote() {
  S.error = "";
  const r = await api("POST", "/api/quote", delivery());
  if (r.ok) {
    noteServerNow(r.data.now);
    S.quote = r.data.quote;
  } else S.error = errText(r);
  render();
}

async function place() {
  S.error = "";
  if (!S.formKey) S.formKey = crypto.randomUUID();
  const r = await api("POST", "/api/orders", { idempotency_key: S.formKey, delivery: delivery() });
  if (r.ok) {
    const o = r.data.order;
    update(o);
    if (r.data.link) saveLink(o.id, location.origin + r.data.link);
    S.placed = o.id;
    S.quote = null;
    S.dropoff = null;
    S.formKey = null;
  } else {
    S.error = errText(r);
    // A refusal names the earliest deliver-by the fleet could meet (Unix seconds).
    if (r.data.details && r.data.details.earliest_deliver_by) {
      S.quote = { feasible: false, reason: r.data.error, earliest_deliver_by: 1000 * +r.data.details.earliest_deliver_by };
    }
    // A refused order is not placed: the next attempt is a new order.
    if (r.status !== 0) S.formKey = null;
  }
  render();
}

async function act(id, what) {
  if (what === "cancel" && !confirm(t("shop.confirmcancel", { id }))) return;
  const r = await api("POST", `/api/orders/${encodeURIComponent(id)}/${what}`);
  if (r.ok && r.data.order) update(r.data.order);
  else if (r.ok && r.data.link) saveLink(id, location.origin + r.data.link);
  else if (!r.ok) S.error = errText(r);
  if (r.ok) renderLive();
  else render();
}

function copy(text, btn) {
  navigator.clipboard?.writeText(text).then(() => (btn.textContent = t("shop.copied")), () => {});
}

function quoteView() {
  const q = S.quote;
  if (!q) return null;
  if (q.feasible) {
    return el("div", { class: "quote ok", id: "quote", dataset: { feasible: "1" } },
      el("p", {}, t("shop.eta", { eta: fmtTime(q.eta_dropoff), latest: fmtTime(q.eta_latest) })),
      el("p", { class: "muted" }, t("shop.pickup", { eta: fmtTime(q.eta_pickup) })));
  }
  const useEarliest = () => {
    const d = new Date(q.earliest_deliver_by);
    S.form.deliver_by = `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
    quote();
  };
  return el("div", { class: "quote refused", id: "quote", dataset: { feasible: "0" } },
    el("p", {}, t("shop.refused", { reason: q.reason })),
    q.earliest_deliver_by && el("p", {}, t("shop.earliest", { time: fmtTime(q.earliest_deliver_by) }),
      " ", el("button", { type: "button", onclick: useEarliest }, t("shop.useearliest"))));
}

function formView() {
  const f = S.form;
  const input = (key, label, attrs) =>
    el("label", {}, label, el("input", { ...attrs, id: "f-" + key, value: f[key], oninput: (e) => (f[key] = e.target.value) }));
  const coord = (key, label) =>
    el("label", {}, label, el("input", {
      id: "f-" + key, type: "number", step: "0.000001", value: S.dropoff ? S.dropoff[key] : "",
      onchange: (e) => {
        S.dropoff = { ...(S.dropoff || { lat: NaN, lon: NaN }), [key]: +e.target.value };
        S.quote = null;
        render();
      },
    }));
  if (!f.deliver_by) f.deliver_by = defaultDeliverBy();
  const placed = S.placed && S.orders.get(S.placed);
  return el("section", { class: "card", id: "new-order" },
    el("h2", {}, t("shop.new")),
    el("p", { class: "help" }, t("shop.clickmap")),
    el("div", { class: "row" }, coord("lat", t("shop.lat")), coord("lon", t("shop.lon"))),
    el("div", { class: "row" },
      input("weight_g", t("shop.weight"), { type: "number", min: 1, step: 1 }),
      input("compartments", t("shop.compartments"), { type: "number", min: 1, max: 4, step: 1 }),
      input("ready_in", t("shop.readyin"), { type: "number", min: 0, step: 1 }),
      input("deliver_by", t("shop.deliverby"), { type: "time" })),
    el("div", { class: "row" },
      el("button", { type: "button", id: "quote-btn", onclick: quote, disabled: !S.dropoff }, t("shop.quote")),
      el("button", { type: "button", id: "place-btn", class: "big primary", onclick: place, disabled: !S.dropoff },
        t("shop.place"))),
    quoteView(),
    S.error && el("p", { class: "error", role: "alert", id: "error" }, S.error),
    placed && el("div", { class: "placed", id: "placed", dataset: { orderId: placed.id } },
      el("p", {}, t("shop.placed", { id: placed.id })),
      el("div", { class: "pin" }, el("span", {}, t("shop.pin")), el("strong", { id: "placed-pin" }, placed.pin)),
      linkView(placed)));
}

function linkView(o) {
  const link = links()[o.id];
  if (link) {
    const btn = el("button", { type: "button" }, t("shop.copy"));
    btn.addEventListener("click", () => copy(link, btn));
    return el("div", { class: "link" }, el("span", {}, t("shop.link")),
      el("a", { href: link, target: "_blank", rel: "noopener noreferrer", class: "track-link" }, link), btn);
  }
  if (["DELIVERED", "CANCELLED", "FAILED", "RETURNED"].includes(o.status)) return null;
  return el("button", { type: "button", class: "new-link", onclick: () => act(o.id, "link") }, t("shop.newlink"));
}

const TERMINAL = ["DELIVERED", "CANCELLED", "FAILED", "RETURNED"];

function orderCard(o) {
  const open = !TERMINAL.includes(o.status);
  const canReady = open && !o.marked_ready && !["IN_TRANSIT", "AT_DROPOFF", "RETURNING"].includes(o.status);
  const canCancel = open && !["IN_TRANSIT", "AT_DROPOFF", "RETURNING", "AT_PICKUP"].includes(o.status);
  return el("article", { class: "order " + o.status.toLowerCase(), dataset: { orderId: o.id, status: o.status } },
    el("header", {}, el("strong", {}, o.id), " ", el("span", { class: "badge" }, statusText(o.status)),
      o.delayed_at && open ? el("span", { class: "badge late" }, t("shop.delayed")) : null),
    el("p", {},
      o.robot ? t("shop.robot", { robot: o.robot }) + " · " : "",
      o.eta_pickup && ["ASSIGNED", "TO_PICKUP"].includes(o.status) ? t("shop.etapick", { time: fmtTime(o.eta_pickup) }) + " · " : "",
      open && o.eta_dropoff ? t("shop.etadrop", { time: fmtTime(o.eta_dropoff) }) + " " + fmtIn(o.eta_dropoff) : "",
      o.status === "DELIVERED" ? t("track.delivered", { time: fmtTime(o.delivered_at) }) : "",
      o.reason ? " · " + o.reason : ""),
    open && el("div", { class: "pin small" }, el("span", {}, "PIN"), el("strong", {}, o.pin)),
    open && linkView(o),
    el("div", { class: "actions" },
      canReady && el("button", { type: "button", class: "big ready", onclick: () => act(o.id, "ready") }, t("shop.ready")),
      o.marked_ready && open && el("span", { class: "badge" }, t("shop.isready")),
      canCancel && el("button", { type: "button", class: "cancel", onclick: () => act(o.id, "cancel") }, t("shop.cancel"))));
}

function todayView() {
  const orders = [...S.orders.values()].sort((a, b) => (b.created_at || 0) - (a.created_at || 0));
  return el("section", { class: "card", id: "orders" },
    el("h2", {}, t("shop.today")),
    orders.length ? orders.map(orderCard) : el("p", { class: "muted" }, t("shop.none")));
}

async function loadHistory() {
  const r = await api("GET", "/api/orders?closed=true");
  S.history = r.ok ? r.data.orders : [];
  renderLive();
}

function historyView() {
  if (!S.history) {
    loadHistory();
    return el("section", { class: "card" }, t("map.loading"));
  }
  return el("section", { class: "card", id: "history" },
    el("h2", {}, t("shop.history"), " ", el("a", { href: "/api/orders.csv", download: "", class: "button" }, t("shop.csv"))),
    el("table", {},
      el("thead", {}, el("tr", {}, ["col.order", "col.status", "col.created", "col.deliverby", "col.delivered", "col.robot"]
        .map((k) => el("th", {}, t(k))))),
      el("tbody", {}, S.history.map((o) => el("tr", { dataset: { orderId: o.id } },
        el("td", {}, o.id), el("td", {}, statusText(o.status)), el("td", {}, fmtDateTime(o.created_at)),
        el("td", {}, fmtDateTime(o.deliver_by)), el("td", {}, fmtDateTime(o.delivered_at)), el("td", {}, o.robot))))));
}

// The parts that change with live events (orders, arrivals, robots on the map); redrawn without touching the
// order form, so typing is never interrupted.
const arrivalsBox = el("div", { id: "arrivals" });
const right = el("div", { id: "right" });

function renderLive() {
  if (!S.me) return;
  const markers = [{ ...S.me.pos, kind: "shop", color: "#7d3c98", label: S.me.name }];
  if (S.dropoff && Number.isFinite(S.dropoff.lat)) markers.push({ ...S.dropoff, kind: "pin", color: "#1e8449" });
  for (const o of S.orders.values()) {
    if (o.robot_pos && !TERMINAL.includes(o.status)) markers.push({ ...o.robot_pos, kind: "robot", color: "#2471a3", label: o.robot });
  }
  map.setMarkers(markers);
  clear(arrivalsBox).append(...S.arrivals.map((a) => el("div", { class: "banner arrive", role: "alert", dataset: { orderId: a.id },
    onclick: () => { S.arrivals = S.arrivals.filter((x) => x !== a); renderLive(); } },
    t("shop.arrived", { robot: a.robot, id: a.id }))));
  const tabs = el("nav", { class: "tabs" },
    el("button", { type: "button", class: S.tab === "today" ? "on" : "", onclick: () => { S.tab = "today"; renderLive(); } }, t("shop.today")),
    el("button", { type: "button", id: "history-tab", class: S.tab === "history" ? "on" : "",
      onclick: () => { S.tab = "history"; S.history = null; renderLive(); } }, t("shop.history")));
  clear(right).append(tabs, S.tab === "today" ? todayView() : historyView());
}

function render() {
  if (!S.me) return;
  clear(app).append(
    el("header", { class: "bar" }, el("strong", { id: "shop-name" }, S.me.name), el("span", { class: "muted" }, fmtTime(serverNow())),
      langSwitch(render), el("button", { type: "button", id: "sign-out", onclick: signOut }, t("signout"))),
    banner,
    arrivalsBox,
    el("div", { class: "cols" }, el("div", {}, map.root, formView()), right),
  );
  renderLive();
  map.draw();
}

// Takes a newer state of an order (never an older one: a reply and an event can cross), and raises the
// arrival banner and chime when its robot comes to the shop.
function update(o) {
  const before = S.orders.get(o.id);
  if (before && (before.updated_at || 0) > (o.updated_at || 0)) return;
  S.orders.set(o.id, o);
  const announced = S.arrivals.some((a) => a.id === o.id);
  if (o.status === "AT_PICKUP" && !announced) {
    S.arrivals.push({ id: o.id, robot: o.robot });
    chime();
  }
  if (o.status !== "AT_PICKUP") S.arrivals = S.arrivals.filter((a) => a.id !== o.id);
}

async function start() {
  const s = await session();
  if (!s || s.role !== "shop") {
    location.href = "/";
    return;
  }
  const r = await api("GET", "/api/shop");
  if (!r.ok) {
    location.href = "/";
    return;
  }
  noteServerNow(r.data.now);
  S.me = r.data;
  render();
  map.fitPoints([S.me.pos], 0.012);
  // Audio may only start after a touch; the first touch anywhere unlocks the chime.
  document.addEventListener("pointerdown", () => { if (!audio) try { audio = new AudioContext(); } catch {} }, { once: true });
  let firstSnapshot;
  const snapshotSeen = new Promise((resolve) => (firstSnapshot = resolve));
  // Interactive: the map drawn and today's orders shown. Marked for the browser benchmark.
  Promise.all([map.ready, snapshotSeen]).then(() => {
    performance.mark("trundle-interactive");
    document.body.dataset.interactiveMs = String(Math.round(performance.now()));
  });
  live("/api/events", {
    snapshot: (d) => {
      firstSnapshot();
      noteServerNow(d.now);
      const before = S.orders;
      S.orders = new Map();
      // A robot already waiting at the shop (after a reload or a reconnect) gets its banner too.
      for (const o of d.orders) {
        S.orders.set(o.id, before.get(o.id) || o);
        update(o);
      }
      renderLive();
    },
    order: (d) => {
      noteServerNow(d.now);
      update(d.order);
      renderLive();
    },
    ended: () => (location.href = "/"),
  }, banner);
  render();
  setInterval(renderLive, 30000);
}

start();
