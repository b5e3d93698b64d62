// The customer's page: where the robot is, when it comes, and the PIN that opens the lid. Reads only
// /api/track/<secret>, which shows this one order and nothing else.
import { t, langSwitch } from "/static/i18n.js";
import { el, clear, live, noteServerNow, fmtTime, fmtIn, statusText } from "/static/common.js";
import { MapView } from "/static/map.js";

const app = document.getElementById("app");
const secret = location.pathname.split("/").pop();
let order = null;
let fitted = false;
const map = new MapView();
const banner = el("div", { class: "banner warn", hidden: true }, t("live.lost"));

function render() {
  const box = el("section", { class: "card track", id: "track" });
  if (!order) {
    box.append(el("p", {}, t("map.loading")));
  } else {
    const o = order;
    box.dataset.status = o.status;
    box.append(el("h1", { id: "status", dataset: { status: o.status } }, statusText(o.status)));
    if (o.delayed && o.eta_dropoff) box.append(el("p", { class: "banner warn" }, t("track.delayed")));
    if (o.eta_dropoff) {
      box.append(
        el("p", { class: "eta", id: "eta", dataset: { eta: o.eta_dropoff } }, t("track.eta", { time: fmtTime(o.eta_dropoff) }),
          " ", el("span", { class: "muted" }, fmtIn(o.eta_dropoff))),
      );
      if (o.promised_latest) box.append(el("p", { class: "muted" }, t("track.latest", { time: fmtTime(o.promised_latest) })));
    }
    if (o.delivered_at) box.append(el("p", { id: "delivered" }, t("track.delivered", { time: fmtTime(o.delivered_at) })));
    if (o.pin) box.append(el("div", { class: "pin" }, el("span", {}, t("track.pin")), el("strong", { id: "pin" }, o.pin)));
    if (o.robot_pos) {
      box.append(el("span", { id: "robot", hidden: true, dataset: { lat: o.robot_pos.lat, lon: o.robot_pos.lon } }));
    }
  }
  clear(app).append(
    el("header", { class: "bar" }, el("strong", {}, t("track.title")), langSwitch(render)),
    banner,
    box,
    map.root,
  );
  map.draw();
}

function show(data) {
  noteServerNow(data.now);
  order = data.order;
  const markers = [];
  if (order.dropoff) markers.push({ ...order.dropoff, kind: "dropoff", color: "#1e8449" });
  if (order.robot_pos) markers.push({ ...order.robot_pos, kind: "robot", color: "#2471a3" });
  map.setMarkers(markers);
  if (!fitted && markers.length) {
    map.fitPoints(markers);
    fitted = !!map.view;
  }
  render();
}

function ended(text) {
  clear(app).append(
    el("header", { class: "bar" }, el("strong", {}, t("track.title"))),
    el("section", { class: "card", id: "track", dataset: { status: "ENDED" } }, el("p", { id: "ended" }, text)),
  );
}

render();
fetch(`/api/track/${encodeURIComponent(secret)}`).then(async (r) => {
  if (!r.ok) {
    ended(r.status === 410 ? t("track.ended") : t("track.notfound"));
    return;
  }
  show(await r.json());
  live(`/api/track/${encodeURIComponent(secret)}/events`, { order: show, ended: () => ended(t("track.ended")) }, banner);
});
setInterval(() => order && render(), 30000);
