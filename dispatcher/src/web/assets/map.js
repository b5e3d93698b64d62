// The walkable graph drawn on a canvas from the dispatcher's own /api/map (no tiles, no third-party library),
// with markers on top. Drag to pan, wheel or the +/− buttons to zoom. Map data (c) OpenStreetMap contributors.
import { t } from "/static/i18n.js";
import { el } from "/static/common.js";

let loaded = null;

// The map, fetched once per page.
export function loadMap() {
  if (!loaded) {
    loaded = fetch("/api/map", { credentials: "same-origin" }).then((r) => {
      if (!r.ok) throw new Error("map " + r.status);
      return r.json();
    });
  }
  return loaded;
}

export class MapView {
  // opts: {onClick(lat, lon, event)}
  constructor(opts = {}) {
    this.opts = opts;
    this.markers = [];
    this.closed = [];
    this.highlight = null;
    this.canvas = el("canvas", { class: "map-canvas", role: "img", "aria-label": "map" });
    this.note = el("div", { class: "map-note" }, t("map.loading"));
    const zoom = (f) => () => {
      this.zoomAt(this.canvas.clientWidth / 2, this.canvas.clientHeight / 2, f);
    };
    this.root = el(
      "div",
      { class: "map" },
      this.canvas,
      this.note,
      el("div", { class: "map-zoom" }, el("button", { type: "button", onclick: zoom(1.5) }, "+"),
        el("button", { type: "button", onclick: zoom(1 / 1.5) }, "−")),
      el("div", { class: "map-attr" }, "© OpenStreetMap contributors"),
    );
    this.view = null;
    this.wire();
    // Resolves once the map is drawn (or failed to load).
    this.ready = loadMap()
      .then((m) => {
        this.map = m;
        this.note.hidden = true;
        if (!this.view) this.fitAll();
        else this.draw();
        this.canvas.dataset.ready = "1";
      })
      .catch(() => {
        this.note.textContent = t("map.failed");
        this.note.dataset.failed = "1";
      });
    new ResizeObserver(() => this.draw()).observe(this.canvas);
  }

  fitAll() {
    const n = this.map.nodes;
    let [a, b, c, d] = [90, -90, 180, -180];
    for (let i = 0; i < n.length; i += 2) {
      a = Math.min(a, n[i]); b = Math.max(b, n[i]);
      c = Math.min(c, n[i + 1]); d = Math.max(d, n[i + 1]);
    }
    this.fit(a, b, c, d);
  }

  // Shows the box [lat0, lat1] x [lon0, lon1] with a margin.
  fit(lat0, lat1, lon0, lon1) {
    const w = this.canvas.clientWidth || 600, h = this.canvas.clientHeight || 400;
    this.k = Math.cos(((lat0 + lat1) / 2) * Math.PI / 180);
    const spanX = Math.max((lon1 - lon0) * this.k, 1e-4), spanY = Math.max(lat1 - lat0, 1e-4);
    const scale = 0.9 * Math.min(w / spanX, h / spanY);
    this.view = { cx: (lon0 + lon1) / 2, cy: (lat0 + lat1) / 2, scale };
    this.draw();
  }

  fitPoints(points, minSpan = 0.004) {
    const ps = points.filter(Boolean);
    if (!ps.length) return;
    let lats = ps.map((p) => p.lat), lons = ps.map((p) => p.lon);
    let [a, b, c, d] = [Math.min(...lats), Math.max(...lats), Math.min(...lons), Math.max(...lons)];
    const pad = (lo, hi) => (hi - lo < minSpan ? [(lo + hi) / 2 - minSpan / 2, (lo + hi) / 2 + minSpan / 2] : [lo, hi]);
    [a, b] = pad(a, b);
    [c, d] = pad(c, d);
    this.fit(a, b, c, d);
  }

  toXY(lat, lon) {
    const w = this.canvas.clientWidth, h = this.canvas.clientHeight, v = this.view;
    return [w / 2 + (lon - v.cx) * this.k * v.scale, h / 2 - (lat - v.cy) * v.scale];
  }

  toLatLon(x, y) {
    const w = this.canvas.clientWidth, h = this.canvas.clientHeight, v = this.view;
    return { lat: v.cy - (y - h / 2) / v.scale, lon: v.cx + (x - w / 2) / (this.k * v.scale) };
  }

  zoomAt(x, y, f) {
    if (!this.view) return;
    const before = this.toLatLon(x, y);
    this.view.scale *= f;
    const after = this.toLatLon(x, y);
    this.view.cx += before.lon - after.lon;
    this.view.cy += before.lat - after.lat;
    this.draw();
  }

  wire() {
    let drag = null;
    this.canvas.addEventListener("pointerdown", (e) => {
      drag = { x: e.offsetX, y: e.offsetY, moved: false };
    });
    this.canvas.addEventListener("pointermove", (e) => {
      if (!drag || !this.view) return;
      const dx = e.offsetX - drag.x, dy = e.offsetY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      if (drag.moved) {
        this.view.cx -= dx / (this.k * this.view.scale);
        this.view.cy += dy / this.view.scale;
        drag.x = e.offsetX;
        drag.y = e.offsetY;
        this.draw();
      }
    });
    this.canvas.addEventListener("pointerup", (e) => {
      const wasDrag = drag && drag.moved;
      drag = null;
      if (!wasDrag && this.view && this.opts.onClick) {
        const p = this.toLatLon(e.offsetX, e.offsetY);
        this.opts.onClick(p.lat, p.lon, e);
      }
    });
    this.canvas.addEventListener("wheel", (e) => {
      e.preventDefault();
      this.zoomAt(e.offsetX, e.offsetY, e.deltaY < 0 ? 1.25 : 0.8);
    }, { passive: false });
  }

  // markers: [{lat, lon, kind: "robot"|"shop"|"dropoff"|"pin", color, label}]
  setMarkers(markers) {
    this.markers = markers.filter((m) => m && Number.isFinite(m.lat) && Number.isFinite(m.lon));
    this.canvas.dataset.markers = String(this.markers.length);
    this.canvas.dataset.robots = String(this.markers.filter((m) => m.kind === "robot").length);
    this.draw();
  }

  setClosed(pairs) {
    this.closed = pairs || [];
    this.draw();
  }

  // The edge (node index pair) nearest a point, and its distance in pixels.
  nearestEdge(lat, lon) {
    if (!this.map) return null;
    const [px, py] = this.toXY(lat, lon);
    const n = this.map.nodes, e = this.map.edges;
    let best = null;
    for (let i = 0; i < e.length; i += 2) {
      const [ax, ay] = this.toXY(n[2 * e[i]], n[2 * e[i] + 1]);
      const [bx, by] = this.toXY(n[2 * e[i + 1]], n[2 * e[i + 1] + 1]);
      const dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy || 1;
      const s = Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / len2));
      const d = Math.hypot(px - (ax + s * dx), py - (ay + s * dy));
      if (!best || d < best.d) best = { a: e[i], b: e[i + 1], d };
    }
    return best;
  }

  draw() {
    const c = this.canvas, dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (!w || !h) return;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.fillStyle = "#f4f1ea";
    g.fillRect(0, 0, w, h);
    if (!this.map || !this.view) return;
    const n = this.map.nodes, e = this.map.edges;
    g.strokeStyle = "#b9b3a6";
    g.lineWidth = 1;
    g.beginPath();
    for (let i = 0; i < e.length; i += 2) {
      const [ax, ay] = this.toXY(n[2 * e[i]], n[2 * e[i] + 1]);
      const [bx, by] = this.toXY(n[2 * e[i + 1]], n[2 * e[i + 1] + 1]);
      if ((ax < 0 && bx < 0) || (ax > w && bx > w) || (ay < 0 && by < 0) || (ay > h && by > h)) continue;
      g.moveTo(ax, ay);
      g.lineTo(bx, by);
    }
    g.stroke();
    const line = (pairs, color, width) => {
      g.strokeStyle = color;
      g.lineWidth = width;
      g.beginPath();
      for (const [a, b] of pairs) {
        const [ax, ay] = this.toXY(n[2 * a], n[2 * a + 1]);
        const [bx, by] = this.toXY(n[2 * b], n[2 * b + 1]);
        g.moveTo(ax, ay);
        g.lineTo(bx, by);
      }
      g.stroke();
    };
    line(this.closed, "#c0392b", 4);
    if (this.highlight) line([this.highlight], "#2471a3", 5);
    for (const m of this.markers) {
      const [x, y] = this.toXY(m.lat, m.lon);
      g.fillStyle = m.color || "#333";
      g.strokeStyle = "#fff";
      g.lineWidth = 2;
      g.beginPath();
      if (m.kind === "shop") g.rect(x - 7, y - 7, 14, 14);
      else if (m.kind === "dropoff" || m.kind === "pin") {
        g.moveTo(x, y);
        g.arc(x, y - 12, 7, Math.PI * 0.8, Math.PI * 2.2);
        g.closePath();
      } else g.arc(x, y, 7, 0, Math.PI * 2);
      g.fill();
      g.stroke();
      if (m.label) {
        g.fillStyle = "#222";
        g.font = "12px system-ui, sans-serif";
        g.fillText(m.label, x + 10, y - 8);
      }
    }
  }
}
