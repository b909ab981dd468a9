// The resource values the console has seen (from Reads and live notifications), how a value is
// shown (units, dates), and the points of the observed numbers that charts draw.

import { subscribe } from "./stream.js";

const values = new Map(); // "ep|/o/i/r" -> {value, time}
const series = new Map(); // "ep|/o/i/r" -> [[t, v], ...], for the charted resources only
const changeListeners = new Set();
let shown = null; // the device whose page is open: {ep, resources: Map(path -> definition)}

export const resourcePath = (path) => path.split("/").slice(0, 4).join("/");

export const valueOf = (ep, path) => values.get(`${ep}|${path}`);

// The device page says which device it shows, with its resource definitions (null when it
// closes): values of that device are shown with their types and units.
export function showDevice(ep, resources) {
  shown = ep === null ? null : { ep, resources };
}

export const shownDevice = () => (shown ? shown.ep : null);

export function definition(ep, path) {
  return shown && shown.ep === ep ? shown.resources.get(resourcePath(path)) : null;
}

// Calls `listener(ep, path, fresh)` when values of a resource change (fresh: from a
// notification), until the returned function is called.
export function onValues(listener) {
  changeListeners.add(listener);
  return () => changeListeners.delete(listener);
}

export function storeRecords(ep, records, live) {
  const touched = new Set();
  for (const r of records) {
    if (!("value" in r)) continue;
    const key = `${ep}|${r.path}`;
    values.set(key, { value: r.value, time: r.time });
    touched.add(resourcePath(r.path));
    if (live && typeof r.value === "number" && series.has(key)) {
      const s = series.get(key);
      s.push([r.time || Date.now() / 1000, r.value]);
      if (s.length > 500) s.shift();
    }
  }
  for (const p of touched) for (const listener of changeListeners) listener(ep, p, live);
}

// The points a chart of `path` starts from; live values are added from then on.
export function startSeries(ep, path, points) {
  series.set(`${ep}|${path}`, points);
}

export const seriesOf = (ep, path) => series.get(`${ep}|${path}`);

function unitsOf(ep, path, resource) {
  if (resource && resource.units) return resource.units;
  // IPSO sensors name their unit in resource 5701 (Sensor Units) of the same instance.
  const parts = path.split("/");
  const units = values.get(`${ep}|/${parts[1]}/${parts[2]}/5701`);
  return units ? String(units.value) : "";
}

// A Time (LwM2M-TS-Core 1.2 §C.2: Unix seconds) as a local date and time.
export function localTime(seconds) {
  const d = new Date(seconds * 1000);
  return Number.isNaN(d.getTime()) ? String(seconds) : d.toLocaleString();
}

// One value as the page shows it: a Time as a local date, a number with its units.
export function valueText(ep, path, resource, value) {
  if (resource && resource.type === "Time" && typeof value === "number") return localTime(value);
  if (typeof value !== "number") return typeof value === "string" ? value : JSON.stringify(value);
  const units = unitsOf(ep, path, resource);
  return units ? `${value} ${units}` : String(value);
}

export function recordText(ep, record) {
  return "value" in record ? valueText(ep, record.path, definition(ep, record.path), record.value) : JSON.stringify(record);
}

// What a resource's cell shows: its value, or its instances' values one a line.
export function display(ep, path, resource) {
  const single = values.get(`${ep}|${path}`);
  if (single) return valueText(ep, path, resource, single.value);
  const parts = [];
  for (const [key, v] of values) {
    if (key.startsWith(`${ep}|${path}/`)) {
      parts.push(`${key.slice(ep.length + path.length + 2)}: ${valueText(ep, path, resource, v.value)}`);
    }
  }
  return parts.join("\n");
}

// Live values from the stream. Values of the backlog are older than what a Read may have
// shown: only live ones count.
subscribe(({ name, data, earlier }) => {
  if ((name === "NOTIFICATION" || name === "SEND") && data.records && !earlier) {
    storeRecords(data.endpoint, data.records, true);
  }
});
