// Shared helpers for Trundle's pages: DOM building (text only, never HTML), the JSON API with the session's
// CSRF token, live streams with an honest "disconnected" banner, and locale-aware formatting.
import { t, lang } from "/static/i18n.js";

let csrf = "";

export function setCsrf(v) {
  csrf = v || "";
}

// el("div", {class: "x", onclick: f, dataset: {id: 1}}, "text", child) — children are text or nodes.
export function el(tag, attrs = {}, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") n.className = v;
    else if (k === "dataset") Object.assign(n.dataset, v);
    else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else if (k === "value") n.value = v;
    else n.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    n.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return n;
}

// Empties `n`; returns an object whose append() skips empty children (false, null, "") as el() does.
export function clear(n) {
  while (n.firstChild) n.removeChild(n.firstChild);
  return { append: (...children) => n.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false && c !== "")) };
}

// Calls the API; resolves to {ok, status, data}. Errors carry {error, code, field, details}.
export async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    return { ok: false, status: 0, data: { error: t("err.network"), code: "NETWORK" } };
  }
  let data = null;
  const type = res.headers.get("Content-Type") || "";
  if (type.includes("json")) data = await res.json().catch(() => null);
  return { ok: res.ok, status: res.status, data: data || {} };
}

// The signed-in session, or null.
export async function session() {
  const r = await api("GET", "/api/session");
  if (!r.ok) return null;
  setCsrf(r.data.csrf);
  return r.data;
}

export async function signOut() {
  await api("DELETE", "/api/session");
  location.href = "/";
}

// A live stream: calls handlers[eventName](data); shows `banner` while disconnected. EventSource reconnects by
// itself; an "ended" event (signed out, link ended) closes it for good.
export function live(path, handlers, banner) {
  const es = new EventSource(path);
  const show = (on) => {
    if (banner) banner.hidden = !on;
    document.body.dataset.live = on ? "disconnected" : "connected";
  };
  es.onopen = () => show(false);
  es.onerror = () => show(true);
  for (const [name, f] of Object.entries(handlers)) {
    es.addEventListener(name, (ev) => {
      show(false);
      f(JSON.parse(ev.data));
    });
  }
  es.addEventListener("ended", (ev) => {
    es.close();
    if (handlers.ended) handlers.ended(JSON.parse(ev.data));
  });
  return es;
}

// Server time minus this browser's clock, so ETAs count down on the server's time.
let skew = 0;
export function noteServerNow(ms) {
  if (typeof ms === "number") skew = ms - Date.now();
}
export function serverNow() {
  return Date.now() + skew;
}

export function fmtTime(ms) {
  if (ms === null || ms === undefined) return "–";
  return new Intl.DateTimeFormat(lang(), { hour: "2-digit", minute: "2-digit" }).format(new Date(ms));
}

export function fmtDateTime(ms) {
  if (ms === null || ms === undefined) return "–";
  return new Intl.DateTimeFormat(lang(), { dateStyle: "short", timeStyle: "short" }).format(new Date(ms));
}

export function fmtNum(v, digits = 0) {
  return new Intl.NumberFormat(lang(), { maximumFractionDigits: digits }).format(v);
}

// "in 12 min" / "3 min ago", from the server's now.
export function fmtIn(ms) {
  if (ms === null || ms === undefined) return "";
  const min = Math.round((ms - serverNow()) / 60000);
  return new Intl.RelativeTimeFormat(lang(), { numeric: "auto" }).format(min, "minute");
}

// An error answer as one line for the user.
export function errText(r) {
  const d = r.data || {};
  return d.error ? d.error : t("err.status", { status: r.status });
}

export function statusText(s) {
  return t("status." + s);
}
