// The map page: the awake devices with a position (Location /6 or GNSS /3430) as points on a
// plain SVG plot, without map tiles, so that the console works offline.

import { enc } from "../lib/api.js";
import { clientPage, objectIds } from "../lib/clients.js";
import { el, svg, view } from "../lib/dom.js";
import { deviceCall } from "../lib/operations.js";

const POSITION = { 6: [0, 1], 3430: [1, 2] }; // object -> [latitude, longitude] resource IDs

const MAP_MAX = 1000; // devices read for the map, at most

// The awake clients with Location or GNSS, asked of the server by filter.
async function locatedClients() {
  const located = new Map();
  for (const object of ["6", "3430"]) {
    // A filtered page may come back short with a next: follow it, up to MAP_MAX devices.
    const query = { object, online: "true", limit: String(MAP_MAX) };
    for (let round = 0; round < 50 && located.size < MAP_MAX; round++) {
      const page = await clientPage(query);
      for (const c of page.clients) if (located.size < MAP_MAX) located.set(c.endpoint, c);
      if (!page.next) break;
      query.cursor = page.next;
    }
  }
  return located.values();
}

// Each device's position, read from its first instance of Location or GNSS.
async function positions(clients) {
  const points = [];
  for (const c of clients) {
    const ids = objectIds(c);
    const oid = ids.has(6) ? 6 : ids.has(3430) ? 3430 : null;
    if (oid === null || c.sleeping) continue;
    const [latId, lonId] = POSITION[oid];
    const { data } = await deviceCall(c.endpoint, `/${oid}/0`, {});
    const recs = (data && data.records) || [];
    const lat = recs.find((r) => r.path === `/${oid}/0/${latId}`);
    const lon = recs.find((r) => r.path === `/${oid}/0/${lonId}`);
    if (lat && lon && typeof lat.value === "number" && typeof lon.value === "number") {
      points.push({ ep: c.endpoint, lat: lat.value, lon: lon.value });
    }
  }
  return points;
}

// The points scaled to fit, each a link to its device's page.
function plot(points) {
  const w = 900;
  const h = 520;
  const pad = 40;
  let [la0, la1] = [Math.min(...points.map((p) => p.lat)), Math.max(...points.map((p) => p.lat))];
  let [lo0, lo1] = [Math.min(...points.map((p) => p.lon)), Math.max(...points.map((p) => p.lon))];
  if (la1 - la0 < 1e-3) [la0, la1] = [la0 - 0.005, la1 + 0.005];
  if (lo1 - lo0 < 1e-3) [lo0, lo1] = [lo0 - 0.005, lo1 + 0.005];
  const x = (lon) => pad + ((lon - lo0) / (lo1 - lo0)) * (w - 2 * pad);
  const y = (lat) => h - pad - ((lat - la0) / (la1 - la0)) * (h - 2 * pad);
  const map = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}` });
  map.append(svg("text", { x: 6, y: h - 6 }, `lat ${la0.toFixed(4)}…${la1.toFixed(4)} · lon ${lo0.toFixed(4)}…${lo1.toFixed(4)}`));
  for (const p of points) {
    const go = () => (location.hash = `#/device/${enc(p.ep)}`);
    map.append(svg("circle", { cx: x(p.lon), cy: y(p.lat), r: 6, "data-endpoint": p.ep, onclick: go }));
    map.append(svg("text", { x: x(p.lon) + 8, y: y(p.lat) + 4 }, p.ep));
  }
  return map;
}

export async function renderMap() {
  const status = el("p", { class: "muted" }, "Reading positions…");
  view().replaceChildren(el("h1", {}, "Map"), status);
  const points = await positions(await locatedClients());
  status.textContent = points.length
    ? `${points.length} devices with a position (Location /6 or GNSS /3430). No map tiles: the console works offline.`
    : "No device reports a position (Location /6 or GNSS /3430).";
  if (points.length) view().append(el("div", { class: "map panel" }, plot(points)));
  return () => {};
}
