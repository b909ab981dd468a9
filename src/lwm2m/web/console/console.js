// The lwm2m web console: plain JavaScript over the REST + SSE API (/api/...).
// Nothing is fetched from outside the server, so the console works offline.
"use strict";

// --- small helpers -------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const view = () => document.getElementById("view");

function ago(seconds) {
  if (!seconds) return "–";
  const d = Math.max(0, Date.now() / 1000 - seconds);
  if (d < 60) return `${Math.round(d)} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  if (d < 86400) return `${Math.round(d / 3600)} h ago`;
  return new Date(seconds * 1000).toLocaleString();
}

const NUMERIC = new Set(["Integer", "Unsigned Integer", "Float", "Time"]);

// --- state ------------------------------------------------------------------------------------

const state = {
  token: localStorage.getItem("lwm2m-token") || "",
  models: new Map(), // object id -> definition (or null when unknown)
  events: [], // the SSE events seen since the console opened, newest last
  listeners: new Set(),
  values: new Map(), // "ep|/o/i/r" -> {value, time}
  observing: new Set(), // "ep|path"
  series: new Map(), // "ep|path" -> [[t, v], ...] for charts
  pending: new Map(), // queued request id -> callback
  link: "connecting", // the event stream: "connecting", "live" or "reconnecting"
  linkListeners: new Set(),
};

const BACKLOG = 200; // events the server kept, asked for on opening the stream

// --- the API ---------------------------------------------------------------------------------

function authHeaders() {
  return state.token ? { Authorization: `Bearer ${state.token}` } : {};
}

async function askToken() {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  input.value = state.token;
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  state.token = input.value.trim();
  localStorage.setItem("lwm2m-token", state.token);
}

async function api(path, { method = "GET", body, query } = {}) {
  const qs = query ? `?${new URLSearchParams(query)}` : "";
  const headers = authHeaders();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(`/api${path}${qs}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) {
    await askToken();
    return api(path, { method, body, query });
  }
  let data = null;
  try {
    data = await res.json();
  } catch (e) {
    data = null;
  }
  return { status: res.status, data };
}

const enc = (s) => encodeURIComponent(s);
const devicePath = (ep, path) => `/clients/${enc(ep)}${path}`;

// A device operation: waits for a queued request (sleeping client) to finish.
async function deviceCall(ep, path, options, target) {
  const { status, data } = await api(devicePath(ep, path), options);
  if (status === 202 && data && data.requestId) {
    const note = `${path}: queued for the sleeping client (request ${data.requestId})`;
    showResult(note, null, ep);
    if (target) showInline(target, note, null, ep);
    return new Promise((resolve) => {
      state.pending.set(data.requestId, (done) => resolve({ status: 200, data: done.result || done }));
    });
  }
  return { status, data };
}

async function model(id) {
  if (!state.models.has(id)) {
    const { status, data } = await api(`/models/${id}`);
    state.models.set(id, status === 200 ? data : null);
  }
  return state.models.get(id);
}

// --- events (SSE over fetch, so that the bearer token can be sent) ---------------------------

function setLink(link) {
  state.link = link;
  const live = document.getElementById("live");
  live.textContent = link === "live" ? "live" : link === "reconnecting" ? "reconnecting…" : "connecting…";
  live.classList.toggle("on", link === "live");
  for (const listener of state.linkListeners) listener(link);
}

function dispatchChunk(chunk) {
  let name = "message";
  let data = "";
  for (const line of chunk.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (!data) return;
  let payload;
  try {
    payload = JSON.parse(data);
  } catch (e) {
    return;
  }
  // An event of the backlog carries the time the server had it (receivedAt, Unix seconds).
  const earlier = typeof payload.receivedAt === "number";
  const event = { name, data: payload, at: earlier ? payload.receivedAt * 1000 : Date.now(), earlier };
  state.events.push(event);
  if (state.events.length > 2000) state.events.splice(0, state.events.length - 2000);
  absorb(event);
  for (const listener of state.listeners) listener(event);
}

// What every view needs from an event: live values, observations, queued results.
function absorb({ name, data, earlier }) {
  const ep = data.endpoint;
  // The client table belongs to the fleet page, which loads it by pages: no whole fleet here.
  // Values of the backlog are older than what a Read may have shown: only live ones count.
  if ((name === "NOTIFICATION" || name === "SEND") && data.records && !earlier) {
    storeRecords(ep, data.records, true);
  } else if (name === "OBSERVATION_ENDED") {
    for (const key of [...state.observing]) if (key.startsWith(`${ep}|`)) state.observing.delete(key);
  } else if (name === "REQUEST_DONE") {
    const callback = state.pending.get(data.requestId);
    if (callback) {
      state.pending.delete(data.requestId);
      callback(data);
    }
  }
}

async function streamEvents() {
  for (;;) {
    try {
      // The stream opens with the last events the server kept (a backlog), then goes on live;
      // after a reconnection the backlog replaces what this page had, so nothing shows twice.
      const res = await fetch(`/api/events?backlog=${BACKLOG}`, { headers: authHeaders() });
      if (res.status === 401) {
        await askToken();
        continue;
      }
      if (!res.ok || !res.body) throw new Error(`events: HTTP ${res.status}`);
      state.events = [];
      setLink("live");
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          dispatchChunk(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
        }
      }
    } catch (e) {
      // the server went away: try again shortly
    }
    setLink("reconnecting");
    await sleep(2000);
  }
}

// --- values ------------------------------------------------------------------------------------

function resourcePath(path) {
  return path.split("/").slice(0, 4).join("/");
}

function storeRecords(ep, records, live) {
  const touched = new Set();
  for (const r of records) {
    if (!("value" in r)) continue;
    const key = `${ep}|${r.path}`;
    state.values.set(key, { value: r.value, time: r.time });
    touched.add(resourcePath(r.path));
    if (live && typeof r.value === "number") {
      const skey = `${ep}|${r.path}`;
      if (state.series.has(skey)) {
        const t = r.time || Date.now() / 1000;
        const s = state.series.get(skey);
        s.push([t, r.value]);
        if (s.length > 500) s.shift();
      }
    }
  }
  for (const p of touched) updateCell(ep, p, live);
}

function unitsOf(ep, path, resource) {
  if (resource && resource.units) return resource.units;
  // IPSO sensors name their unit in resource 5701 (Sensor Units) of the same instance.
  const parts = path.split("/");
  const units = state.values.get(`${ep}|/${parts[1]}/${parts[2]}/5701`);
  return units ? String(units.value) : "";
}

// A Time (LwM2M-TS-Core 1.2 §C.2: Unix seconds) as a local date and time.
function localTime(seconds) {
  const d = new Date(seconds * 1000);
  return Number.isNaN(d.getTime()) ? String(seconds) : d.toLocaleString();
}

// One value as the page shows it: a Time as a local date, a number with its units.
function valueText(ep, path, resource, value) {
  if (resource && resource.type === "Time" && typeof value === "number") return localTime(value);
  if (typeof value !== "number") return typeof value === "string" ? value : JSON.stringify(value);
  const units = unitsOf(ep, path, resource);
  return units ? `${value} ${units}` : String(value);
}

function recordText(ep, record) {
  const resource = currentDevice && currentDevice.ep === ep ? currentDevice.resources.get(resourcePath(record.path)) : null;
  return "value" in record ? valueText(ep, record.path, resource, record.value) : JSON.stringify(record);
}

function display(ep, path, resource) {
  const single = state.values.get(`${ep}|${path}`);
  if (single) return valueText(ep, path, resource, single.value);
  const parts = [];
  for (const [key, v] of state.values) {
    if (key.startsWith(`${ep}|${path}/`)) {
      parts.push(`${key.slice(ep.length + path.length + 2)}: ${valueText(ep, path, resource, v.value)}`);
    }
  }
  return parts.join("\n");
}

let currentDevice = null; // {ep, resources: Map(path -> resource definition)}

function updateCell(ep, path, fresh) {
  if (!currentDevice || currentDevice.ep !== ep) return;
  const cell = document.querySelector(`[data-value="${CSS.escape(path)}"]`);
  if (!cell) return;
  cell.textContent = display(ep, path, currentDevice.resources.get(path));
  if (fresh) {
    cell.classList.remove("fresh");
    void cell.offsetWidth;
    cell.classList.add("fresh");
  }
  drawChart(ep, path);
}

// --- results -------------------------------------------------------------------------------------

// CoAP response codes by name (RFC 7252 §12.1.2, RFC 7959 §2.9, RFC 8132 §6), shown as "2.05 Content".
const CODE_NAMES = {
  "2.01": "Created", "2.02": "Deleted", "2.03": "Valid", "2.04": "Changed", "2.05": "Content",
  "2.31": "Continue", "4.00": "Bad Request", "4.01": "Unauthorized", "4.02": "Bad Option",
  "4.03": "Forbidden", "4.04": "Not Found", "4.05": "Method Not Allowed", "4.06": "Not Acceptable",
  "4.08": "Request Entity Incomplete", "4.09": "Conflict", "4.12": "Precondition Failed",
  "4.13": "Request Entity Too Large", "4.15": "Unsupported Content-Format", "4.22": "Unprocessable Entity",
  "5.00": "Internal Server Error", "5.01": "Not Implemented", "5.02": "Bad Gateway",
  "5.03": "Service Unavailable", "5.04": "Gateway Timeout", "5.05": "Proxying Not Supported",
};

function codeText(code) {
  const c = String(code);
  return /\s/.test(c) || !CODE_NAMES[c] ? c : `${c} ${CODE_NAMES[c]}`;
}

// One result: the operation and path, its CoAP code by name (or the HTTP error), the details.
function resultNodes(title, answer, ep) {
  const { status, data } = answer || {};
  const code = data && data.code;
  const ok = code ? String(code).startsWith("2.") : status && status < 300;
  const nodes = [
    el(
      "div",
      { class: "result-head" },
      el("strong", {}, title),
      " ",
      code ? el("span", { class: `code ${ok ? "ok" : "bad"}` }, codeText(code)) : "",
      answer && !code && status ? el("span", { class: `code ${ok ? "ok" : "bad"}` }, `HTTP ${status}`) : "",
    ),
  ];
  if (!answer) return nodes;
  if (status >= 400 && data && data.error) nodes.push(el("div", { class: "error" }, `HTTP ${status}: ${data.error}`));
  if (data && data.diagnostic) nodes.push(el("div", { class: "error" }, data.diagnostic));
  if (data && Array.isArray(data.records) && data.records.length) {
    const lines = data.records.map((r) => `${r.path} = ${recordText(ep, r)}`);
    nodes.push(el("pre", { class: "result" }, lines.join("\n")));
  } else if (data && !data.code) {
    nodes.push(el("pre", { class: "result" }, JSON.stringify(data, null, 2)));
  } else if (data && (data.links || data.location)) {
    nodes.push(el("pre", { class: "result" }, data.location ? `created ${data.location}` : data.links.join("\n")));
  }
  return nodes;
}

// The last result, in a bar that stays in view at the top of the page.
function showResult(title, answer, ep) {
  const box = document.getElementById("result");
  if (!box) return;
  box.classList.remove("muted");
  box.replaceChildren(...resultNodes(title, answer, ep));
}

// The same result beside what it belongs to: under a resource's row, an instance's or an
// object's header. A newer result of the same place replaces the older one.
function showInline(target, title, answer, ep) {
  if (!target || !target.isConnected) return;
  const nodes = resultNodes(title, answer, ep);
  const close = el("button", { type: "button", class: "close", title: "close", onclick: (e) => e.target.closest(".inline-result").remove() }, "×");
  if (target.tagName === "TR") {
    let row = target.nextElementSibling;
    if (!row || !row.classList.contains("inline-result")) {
      row = el("tr", { class: "inline-result", "data-result-for": target.dataset.path || "" });
      target.after(row);
    }
    row.replaceChildren(el("td", {}), el("td", { colspan: "6" }, close, ...nodes));
  } else {
    let box = [...target.children].find((c) => c.classList.contains("inline-result"));
    if (!box) {
      box = el("div", { class: "inline-result", "data-result-for": target.dataset.instance || target.dataset.object || "" });
      const header = target.querySelector(":scope > .toolbar, :scope > summary");
      if (header) header.after(box);
      else target.prepend(box);
    }
    box.replaceChildren(close, ...nodes);
  }
}

async function run(ep, title, path, options, target) {
  const head = `${title} ${path}`;
  showResult(`${head} …`, null, ep);
  if (target) showInline(target, `${head} …`, null, ep);
  const answer = await deviceCall(ep, path, options, target);
  const { data } = answer;
  if (data && data.records) storeRecords(ep, data.records, false);
  showResult(head, answer, ep);
  if (target) showInline(target, head, answer, ep);
  return answer;
}

// --- fleet page ----------------------------------------------------------------------------------

const PAGE = 100; // clients asked for per page
// ms of quiet typing before the filter goes to the server: short, as the answer must show
// within 200 ms of the last key (bench/console_filter.py measures it over 10,000 devices);
// meanwhile the rows already loaded are narrowed at once.
const FILTER_DELAY = 100;

// A page of GET /api/clients: {clients, next}. The server walks its index by endpoint name and
// may answer a filtered page short (with a next), so that listing never holds it up.
async function clientPage(query) {
  const { status, data } = await api("/clients", { query });
  if (status !== 200 || !data || !Array.isArray(data.clients)) return { clients: [], next: null, status, data };
  return data;
}

// The same filters as the server's, for clients that register while the page is open.
function globRegex(glob) {
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*") out += ".*";
    else if (c === "?") out += ".";
    else if (c === "[") {
      const close = glob.indexOf("]", i + 2);
      if (close < 0) out += "\\[";
      else {
        let set = glob.slice(i + 1, close).replace(/\\/g, "\\\\");
        if (set.startsWith("!")) set = "^" + set.slice(1);
        out += `[${set}]`;
        i = close;
      }
    } else out += c.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${out}$`, "s");
}

function filterTest({ endpoint, object, online }) {
  const name = endpoint || "";
  const glob = /[*?[]/.test(name) ? globRegex(name) : null;
  const oid = object === "" || object === undefined ? null : Number(object);
  return (c) =>
    (glob ? glob.test(c.endpoint) : c.endpoint.startsWith(name)) &&
    (oid === null || objectIds(c).has(oid)) &&
    (online === "" || online === undefined || String(!c.sleeping) === online);
}

function objectIds(client) {
  const ids = new Set();
  for (const o of client.objects || []) ids.add(Number(o.path.split("/")[1]));
  return ids;
}

// The endpoint a cursor stands for (base64url of its UTF-8 form, as the server makes them).
function cursorName(cursor) {
  const bytes = Uint8Array.from(atob(cursor.replace(/-/g, "+").replace(/_/g, "/")), (ch) => ch.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

// Code-point order, as the server sorts endpoint names (not localeCompare).
const byName = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

async function renderFleet() {
  const nameFilter = el("input", {
    id: "filter-name",
    placeholder: "name prefix or glob*",
    title: "endpoint name prefix, or a glob with *, ? or [...]",
    type: "search",
  });
  const objectFilter = el("select", { id: "filter-object" }, el("option", { value: "" }, "all objects"));
  const stateFilter = el(
    "select",
    { id: "filter-state" },
    el("option", { value: "" }, "any state"),
    el("option", { value: "true" }, "online"),
    el("option", { value: "false" }, "sleeping"),
  );
  const count = el("span", { class: "muted", id: "fleet-count" });
  const body = el("tbody", { id: "fleet" });
  const more = el("button", { id: "fleet-more", type: "button", hidden: true }, "More");
  const sentinel = el("div", { id: "fleet-end" });
  view().replaceChildren(
    el("h1", {}, "Fleet"),
    el("div", { class: "toolbar" }, nameFilter, objectFilter, stateFilter, count),
    el(
      "div",
      { class: "panel" },
      el(
        "table",
        {},
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            ["Endpoint", "LwM2M", "Binding", "Address", "Last seen", "State", "Objects"].map((h) => el("th", {}, h)),
          ),
        ),
        body,
      ),
      more,
      sentinel,
    ),
  );

  // The listing shown: the pages loaded so far for the current filter, in endpoint order.
  let shown = new Map(); // endpoint -> registration view
  let next = null; // cursor of the next page, null when everything matching is shown
  let generation = 0; // bumped by each new filter: answers for an older one are dropped
  let loading = false;
  let closed = false;
  const filters = () => ({ endpoint: nameFilter.value.trim(), object: objectFilter.value, online: stateFilter.value });
  let matches = filterTest(filters());

  function row(c) {
    const st = c.sleeping ? "sleeping" : "online";
    return el(
      "tr",
      { class: "client", "data-endpoint": c.endpoint, onclick: () => (location.hash = `#/device/${enc(c.endpoint)}`) },
      el("td", {}, el("a", { href: `#/device/${enc(c.endpoint)}` }, c.endpoint)),
      el("td", {}, c.lwm2mVersion),
      el("td", {}, c.binding + (c.queueMode ? " (queue)" : "")),
      el("td", {}, c.address),
      el("td", { "data-seen": c.lastUpdate }, ago(c.lastUpdate)),
      el("td", {}, el("span", { class: `state ${st}` }, st)),
      el("td", { class: "muted" }, String(objectIds(c).size)),
    );
  }

  let asking = false; // a new filter is on its way to the server
  function rows() {
    const clients = [...shown.values()].filter(matches).sort((a, b) => byName(a.endpoint, b.endpoint));
    body.replaceChildren(...clients.map(row));
    if (asking) count.textContent = `${clients.length} loaded clients match, asking the server…`;
    else count.textContent = `${clients.length} clients${next ? " shown, more to load" : ""}`;
    more.hidden = !next || asking;
  }

  async function loadMore(fresh) {
    if (loading && !fresh) return;
    const mine = fresh ? ++generation : generation;
    if (!fresh && !next) return;
    loading = true;
    try {
      const f = filters();
      const query = { limit: String(PAGE) };
      if (f.endpoint) query.endpoint = f.endpoint;
      if (f.object) query.object = f.object;
      if (f.online) query.online = f.online;
      // A sparse filter can answer short pages: go on until a page's worth is shown or the end.
      let wanted = PAGE;
      let cursor = fresh ? null : next;
      for (let round = 0; round < 20 && wanted > 0; round++) {
        if (cursor) query.cursor = cursor;
        const page = await clientPage(query);
        if (mine !== generation || closed) return;
        if (fresh && round === 0) {
          shown = new Map();
          asking = false;
        }
        for (const c of page.clients) shown.set(c.endpoint, c);
        wanted -= page.clients.length;
        next = page.next;
        cursor = page.next;
        if (!cursor) break;
      }
      rows();
      fillObjects();
    } finally {
      if (mine === generation) loading = false;
    }
    // Still at the end of the table (a short page, or a scroll during the load): go on.
    if (mine === generation && endInView && next && !closed) setTimeout(() => loadMore(false), 0);
  }

  const known = new Set();
  async function fillObjects() {
    const ids = new Set();
    for (const c of shown.values()) for (const id of objectIds(c)) ids.add(id);
    for (const id of [...ids].sort((a, b) => a - b)) {
      if (known.has(id) || id === 0) continue;
      known.add(id);
      const m = await model(id);
      const option = el("option", { value: String(id) }, `${id} ${m ? m.name : ""}`);
      const after = [...objectFilter.options].find((o) => o.value && Number(o.value) > id);
      objectFilter.insertBefore(option, after || null);
    }
  }

  let timer = null;
  function refilter() {
    clearTimeout(timer);
    matches = filterTest(filters());
    asking = true;
    rows(); // the loaded rows that match, at once
    timer = setTimeout(() => loadMore(true), FILTER_DELAY);
  }
  nameFilter.addEventListener("input", refilter);
  objectFilter.addEventListener("change", refilter);
  stateFilter.addEventListener("change", refilter);
  more.addEventListener("click", () => loadMore(false));
  // Infinite scroll: the next page loads when the end of the table comes into view.
  let endInView = false;
  const watcher = new IntersectionObserver((entries) => {
    endInView = entries[entries.length - 1].isIntersecting;
    if (endInView && next) loadMore(false);
  });

  let scheduled = false;
  const refresh = () => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      rows();
      fillObjects();
    });
  };
  // Live changes: a client already shown follows its events; a new one that matches joins the
  // table when it falls within what is loaded (before the next cursor's position, or anywhere
  // once the last page is in).
  const within = (ep) => next === null || byName(ep, cursorName(next)) <= 0;
  const listener = (e) => {
    const ep = e.data.endpoint;
    if ((e.name === "REGISTRATION" || e.name === "UPDATE") && e.data.registration) {
      const c = e.data.registration; // awake: a Register or an Update wakes a queue-mode client
      if (matches(c) && (shown.has(ep) || within(ep))) shown.set(ep, c);
      else shown.delete(ep);
      refresh();
    } else if (e.name === "DEREGISTRATION" || e.name === "EXPIRED") {
      if (shown.delete(ep)) refresh();
    } else if ((e.name === "SLEEPING" || e.name === "AWAKE") && shown.has(ep)) {
      const c = shown.get(ep);
      c.sleeping = e.name === "SLEEPING";
      if (!matches(c)) shown.delete(ep);
      refresh();
    }
  };
  state.listeners.add(listener);
  await loadMore(true);
  watcher.observe(sentinel); // after the first page, so that it is not loaded twice over
  const ticker = setInterval(() => {
    for (const td of body.querySelectorAll("[data-seen]")) td.textContent = ago(Number(td.dataset.seen));
  }, 1000);
  return () => {
    closed = true;
    clearTimeout(timer);
    watcher.disconnect();
    state.listeners.delete(listener);
    clearInterval(ticker);
  };
}

// --- device page -----------------------------------------------------------------------------------

function groupObjects(reg) {
  const objects = new Map();
  for (const o of reg.objects || []) {
    const [, oid, iid] = o.path.split("/");
    const id = Number(oid);
    if (!objects.has(id)) objects.set(id, { ver: o.ver, instances: [] });
    if (iid !== undefined) objects.get(id).instances.push(Number(iid));
    else if (o.ver) objects.get(id).ver = o.ver;
  }
  return new Map([...objects].sort((a, b) => a[0] - b[0]));
}

// The input a Write takes: a boolean has no value chosen in advance, a Time is a local date and
// time, a number says its units.
function typedInput(resource) {
  const t = resource.type;
  if (t === "Boolean") {
    return el(
      "select",
      { "data-input": "boolean" },
      el("option", { value: "", disabled: true, selected: true }, "choose…"),
      el("option", { value: "true" }, "true"),
      el("option", { value: "false" }, "false"),
    );
  }
  if (t === "Time") return el("input", { type: "datetime-local", step: "1", "data-input": "time" });
  if (NUMERIC.has(t)) {
    const units = resource.units ? ` (${resource.units})` : "";
    return el("input", { type: "number", step: t === "Float" ? "any" : "1", placeholder: `${t}${units}` });
  }
  return el("input", { type: "text", placeholder: t === "Opaque" ? "base64" : t === "Objlnk" ? "3:0" : t });
}

// Why the input cannot be written as it is, or "" when it can.
function inputProblem(resource, input) {
  const t = resource.type;
  if (t === "Boolean") return input.value === "" ? "choose true or false" : "";
  if (t === "Time") return input.value === "" || !input.validity.valid ? "enter a date and time" : "";
  if (NUMERIC.has(t)) {
    if (input.validity.badInput) return "not a number";
    if (input.value === "") return "enter a number";
    if (!Number.isFinite(Number(input.value))) return "not a number";
    if (t !== "Float" && !Number.isInteger(Number(input.value))) return "enter a whole number";
  }
  return "";
}

function typedValue(resource, input) {
  const t = resource.type;
  if (t === "Boolean") return input.value === "true";
  // datetime-local is the user's local time; the device takes Unix seconds.
  if (t === "Time") return Math.round(new Date(input.value).getTime() / 1000);
  if (NUMERIC.has(t)) return Number(input.value);
  return input.value;
}

function attributesForm(ep, path, numeric, target) {
  const names = ["pmin", "pmax", "epmin", "epmax", "con"].concat(numeric ? ["gt", "lt", "st", "edge"] : []);
  const inputs = names.map((n) => el("input", { name: n, placeholder: n, type: "number", step: "any" }));
  const form = el(
    "form",
    {
      class: "attrs toolbar",
      onsubmit: async (e) => {
        e.preventDefault();
        const query = {};
        for (const i of inputs) if (i.value !== "") query[i.name] = i.value;
        if (!Object.keys(query).length) {
          showInline(target, `Write-Attributes ${path}: give at least one attribute`, null, ep);
          return;
        }
        form.remove();
        await run(ep, "Write-Attributes", `${path}/attributes`, { method: "PUT", query }, target);
      },
    },
    el("span", { class: "muted" }, `attributes of ${path}:`),
    inputs,
    el("button", { class: "primary" }, "Write attributes"),
    el("button", { type: "button", onclick: () => form.remove() }, "Close"),
  );
  return form;
}

function resourceRow(ep, oid, iid, resource) {
  const path = `/${oid}/${iid}/${resource.id}`;
  const ops = resource.operations || "";
  const actions = el("div", { class: "actions" });
  const key = `${ep}|${path}`;
  if (ops.includes("R")) {
    actions.append(
      el("button", { "data-op": "read", onclick: (e) => readResource(ep, path, oid, resource, e.target.closest("tr")) }, "Read"),
    );
    const obs = el(
      "button",
      {
        "data-op": "observe",
        class: state.observing.has(key) ? "on" : "",
        onclick: () => toggleObserve(ep, path, obs, resource, obs.closest("tr")),
      },
      state.observing.has(key) ? "Cancel" : "Observe",
    );
    actions.append(obs);
  }
  if (ops.includes("W")) {
    const input = typedInput(resource);
    // Nothing to write (an empty number, no boolean chosen): the button stays disabled and
    // says why; no request goes out.
    const write = el(
      "button",
      {
        "data-op": "write",
        onclick: (e) => {
          const problem = inputProblem(resource, input);
          const tr = e.target.closest("tr");
          if (problem) return showInline(tr, `Write ${path}: ${problem}`, null, ep);
          return run(ep, "Write", path, { method: "PUT", body: { value: typedValue(resource, input) } }, tr);
        },
      },
      "Write",
    );
    const check = () => {
      const problem = inputProblem(resource, input);
      write.disabled = Boolean(problem);
      write.title = problem || `write ${path}`;
    };
    input.addEventListener("input", check);
    input.addEventListener("change", check);
    check();
    actions.append(input, write);
  }
  if (ops.includes("E")) {
    const args = el("input", { type: "text", placeholder: "arguments" });
    actions.append(
      args,
      el(
        "button",
        {
          "data-op": "execute",
          onclick: (e) => run(ep, "Execute", path, { method: "POST", body: { args: args.value } }, e.target.closest("tr")),
        },
        "Execute",
      ),
    );
  }
  if (ops.includes("R") || ops.includes("W")) {
    actions.append(
      el(
        "button",
        {
          "data-op": "attributes",
          onclick: (e) => {
            const tr = e.target.closest("tr");
            tr.after(el("tr", {}, el("td", { colspan: "7" }, attributesForm(ep, path, NUMERIC.has(resource.type), tr))));
          },
        },
        "Attributes",
      ),
    );
  }
  const pick = ops.includes("R") ? el("input", { type: "checkbox", "data-composite": path }) : "";
  return el(
    "tr",
    { "data-path": path },
    el("td", {}, pick),
    el("td", { class: "muted" }, String(resource.id)),
    el("td", {}, resource.name, resource.units ? el("span", { class: "muted" }, ` [${resource.units}]`) : ""),
    el("td", { class: "ops" }, `${resource.type}${resource.multiple ? "[]" : ""} · ${ops || "–"}`),
    el("td", { class: "value", "data-value": path }, display(ep, path, resource)),
    el("td", {}, actions),
    el("td", { class: "chart-cell", "data-chart": path }),
  );
}

async function readResource(ep, path, oid, resource, target) {
  const parts = path.split("/");
  const m = state.models.get(oid);
  if (resource && !resource.units && typeof resource === "object" && m) {
    const hasUnits = (m.resources || []).some((r) => r.id === 5701);
    if (hasUnits && !state.values.has(`${ep}|/${parts[1]}/${parts[2]}/5701`)) {
      const { data } = await deviceCall(ep, `/${parts[1]}/${parts[2]}/5701`, {});
      if (data && data.records) storeRecords(ep, data.records, false);
    }
  }
  return run(ep, "Read", path, {}, target);
}

async function toggleObserve(ep, path, button, resource, target) {
  const key = `${ep}|${path}`;
  if (state.observing.has(key)) {
    await run(ep, "Cancel observation", `${path}/observe`, { method: "DELETE" }, target);
    state.observing.delete(key);
    button.textContent = "Observe";
    button.classList.remove("on");
    return;
  }
  const answer = await run(ep, "Observe", `${path}/observe`, { method: "POST" }, target);
  if (answer.status === 200 && answer.data && String(answer.data.code).startsWith("2.")) {
    state.observing.add(key);
    button.textContent = "Cancel";
    button.classList.add("on");
    if (resource && NUMERIC.has(resource.type)) await startChart(ep, path);
  }
}

async function startChart(ep, path) {
  const key = `${ep}|${path}`;
  const { status, data } = await api(`/clients/${enc(ep)}/history${path}`, { query: { limit: 200 } });
  const items = status === 200 ? (Array.isArray(data) ? data : data.values || data.history || data.records || []) : [];
  const series = items
    .filter((r) => typeof r.value === "number")
    .map((r) => [r.time, r.value])
    .sort((a, b) => a[0] - b[0]);
  const current = state.values.get(key);
  if (!series.length && current && typeof current.value === "number") series.push([Date.now() / 1000, current.value]);
  state.series.set(key, series);
  drawChart(ep, path);
}

function drawChart(ep, path) {
  const key = `${ep}|${path}`;
  const series = state.series.get(key);
  const cell = document.querySelector(`[data-chart="${CSS.escape(path)}"]`);
  if (!series || !cell) return;
  const w = 220;
  const h = 60;
  const chart = svg("svg", { class: "chart", width: w, height: h, viewBox: `0 0 ${w} ${h}`, "data-points": series.length });
  if (series.length) {
    const ts = series.map((p) => p[0]);
    const vs = series.map((p) => p[1]);
    const t0 = Math.min(...ts);
    const t1 = Math.max(...ts);
    let v0 = Math.min(...vs);
    let v1 = Math.max(...vs);
    if (v0 === v1) {
      v0 -= 1;
      v1 += 1;
    }
    const x = (t) => (t1 === t0 ? w / 2 : 4 + ((t - t0) / (t1 - t0)) * (w - 8));
    const y = (v) => h - 12 - ((v - v0) / (v1 - v0)) * (h - 20);
    const d = series.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    chart.append(svg("path", { d }));
    chart.append(svg("text", { x: 2, y: h - 1 }, `${v0.toFixed(1)}…${v1.toFixed(1)} (${series.length})`));
  }
  cell.replaceChildren(chart);
}

function createForm(ep, oid, m, instances) {
  let next = 0;
  while (instances.includes(next)) next++;
  const writable = ((m && m.resources) || []).filter((r) => (r.operations || "").includes("W") && !r.multiple).slice(0, 3);
  const sample = writable.map((r) => ({
    path: `/${oid}/${next}/${r.id}`,
    value: r.type === "Boolean" ? false : NUMERIC.has(r.type) ? 0 : "",
  }));
  const text = el("textarea", { rows: "5", cols: "70" }, JSON.stringify(sample, null, 1));
  const form = el(
    "form",
    {
      class: "panel",
      onsubmit: async (e) => {
        e.preventDefault();
        let records;
        try {
          records = JSON.parse(text.value);
        } catch (err) {
          showInline(form.closest("details"), `Create /${oid}: the records are not JSON (${err.message})`, null, ep);
          return;
        }
        const section = form.closest("details");
        form.remove();
        await run(ep, "Create", `/${oid}`, { method: "POST", body: { records } }, section);
      },
    },
    el("div", { class: "muted" }, `New instance of /${oid}: its records`),
    text,
    el("div", {}, el("button", { class: "primary" }, "Create"), " ", el("button", { type: "button", onclick: () => form.remove() }, "Close")),
  );
  return form;
}

// Fill the page with the device's current values, one instance at a time (quietly).
async function readAll(ep, objects) {
  for (const [oid, info] of objects) {
    if (oid === 0 || oid === 21) continue;
    for (const iid of info.instances) {
      if (!currentDevice || currentDevice.ep !== ep) return;
      const { status, data } = await api(devicePath(ep, `/${oid}/${iid}`));
      if (status === 200 && data && data.records) storeRecords(ep, data.records, false);
    }
  }
}

async function renderDevice(ep) {
  const { status, data: reg } = await api(`/clients/${enc(ep)}`);
  if (status !== 200) {
    view().replaceChildren(el("h1", {}, ep), el("p", { class: "error" }, (reg && reg.error) || `HTTP ${status}`));
    return () => {};
  }
  const resources = new Map();
  currentDevice = { ep, resources };
  const stateBadge = el("span", { class: `state ${reg.sleeping ? "sleeping" : "online"}`, id: "device-state" }, reg.sleeping ? "sleeping" : "online");
  const objects = groupObjects(reg);
  const sections = [];
  for (const [oid, info] of objects) {
    if (oid === 0 || oid === 21) continue;
    const m = await model(oid);
    const name = m ? m.name : `Object ${oid}`;
    // The Server object's many settings stay folded; device objects are open.
    const section = el(
      "details",
      { class: "panel", "data-object": String(oid), open: oid !== 1 },
      el(
        "summary",
        { class: "toolbar" },
        el("h2", {}, `${name} `, el("span", { class: "muted" }, `/${oid}${info.ver ? ` v${info.ver}` : ""}`)),
        el(
          "button",
          {
            "data-op": "discover",
            onclick: (e) => {
              e.preventDefault(); // a button in a summary would fold the object
              run(ep, "Discover", `/${oid}/discover`, {}, e.target.closest("details"));
            },
          },
          "Discover",
        ),
        el(
          "button",
          {
            "data-op": "create",
            onclick: (e) => {
              e.preventDefault();
              const section = e.target.closest("details");
              section.open = true;
              section.append(createForm(ep, oid, m, info.instances));
            },
          },
          "Create instance",
        ),
      ),
    );
    if (!m) {
      // Without a definition the server cannot name or type this object's resources: say how to add one.
      section.append(
        el(
          "p",
          { class: "hint", "data-hint": "no-model" },
          `The server has no model of object ${oid}: its resources are shown as the device sends them (TLV values as raw bytes with their possible readings). `,
          `To name and type them, start the server with its DDF file: lwm2m server --models PATH (a DDF XML file or a folder of them).`,
        ),
      );
    }
    for (const iid of info.instances) {
      const ipath = `/${oid}/${iid}`;
      const tbody = el("tbody");
      for (const r of (m && m.resources) || []) {
        resources.set(`${ipath}/${r.id}`, r);
        tbody.append(resourceRow(ep, oid, iid, r));
      }
      section.append(
        el(
          "div",
          { class: "instance", "data-instance": ipath },
          el(
            "div",
            { class: "toolbar" },
            el("h3", {}, ipath),
            el("button", { "data-op": "read-instance", onclick: (e) => run(ep, "Read", ipath, {}, e.target.closest(".instance")) }, "Read instance"),
            el("button", { "data-op": "discover", onclick: (e) => run(ep, "Discover", `${ipath}/discover`, {}, e.target.closest(".instance")) }, "Discover"),
            el(
              "button",
              {
                "data-op": "attributes",
                onclick: (e) => e.target.closest(".toolbar").after(attributesForm(ep, ipath, false, e.target.closest(".instance"))),
              },
              "Attributes",
            ),
            el(
              "button",
              {
                "data-op": "delete",
                onclick: async (e) => {
                  const box = e.target.closest(".instance");
                  if (confirm(`Delete ${ipath} on ${ep}?`)) await run(ep, "Delete", ipath, { method: "DELETE" }, box);
                },
              },
              "Delete",
            ),
          ),
          m
            ? el(
                "table",
                {},
                el("thead", {}, el("tr", {}, ["", "ID", "Resource", "Type", "Value", "Actions", "Chart"].map((h) => el("th", {}, h)))),
                tbody,
              )
            : el("p", { class: "muted" }, "No model for this object: use Read instance."),
        ),
      );
    }
    sections.push(section);
  }
  const compositeButton = el(
    "button",
    {
      id: "read-selected",
      onclick: async () => {
        const paths = [...document.querySelectorAll("[data-composite]:checked")].map((c) => c.dataset.composite);
        if (!paths.length) return showResult("Select resources first (the boxes on the left)", null);
        await run(ep, "Read-Composite", "/composite/read", { method: "POST", body: { paths } });
      },
    },
    "Read selected",
  );
  view().replaceChildren(
    el("h1", {}, ep, " ", stateBadge),
    el(
      "p",
      { class: "muted" },
      `LwM2M ${reg.lwm2mVersion} · binding ${reg.binding}${reg.queueMode ? " (queue mode)" : ""} · ${reg.address} · lifetime ${reg.lifetime} s · registered ${ago(reg.registeredAt)}`,
    ),
    el("div", { class: "toolbar" }, compositeButton, el("a", { href: "#/" }, "← fleet")),
    el(
      "div",
      { class: "panel sticky", id: "result-panel" },
      el("div", { id: "result", class: "muted" }, "Results show under the row they belong to; the last one also here."),
    ),
    ...sections,
  );
  for (const key of state.observing) {
    if (key.startsWith(`${ep}|`)) drawChart(ep, key.slice(ep.length + 1));
  }
  if (!reg.sleeping) readAll(ep, objects);
  const listener = (e) => {
    if (e.data.endpoint !== ep) return;
    if (e.name === "SLEEPING" || e.name === "AWAKE") {
      const asleep = e.name === "SLEEPING";
      stateBadge.textContent = asleep ? "sleeping" : "online";
      stateBadge.className = `state ${asleep ? "sleeping" : "online"}`;
    } else if (e.name === "DEREGISTRATION" || e.name === "EXPIRED") {
      stateBadge.textContent = "offline";
      stateBadge.className = "state offline";
    }
  };
  state.listeners.add(listener);
  return () => {
    state.listeners.delete(listener);
    currentDevice = null;
  };
}

// --- map -----------------------------------------------------------------------------------------------

const POSITION = { 6: [0, 1], 3430: [1, 2] }; // object -> [latitude, longitude] resource IDs

const MAP_MAX = 1000; // devices read for the map, at most

async function renderMap() {
  const points = [];
  const status = el("p", { class: "muted" }, "Reading positions…");
  view().replaceChildren(el("h1", {}, "Map"), status);
  // Only the awake clients with Location or GNSS, asked of the server by filter.
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
  for (const c of located.values()) {
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
  status.textContent = points.length
    ? `${points.length} devices with a position (Location /6 or GNSS /3430). No map tiles: the console works offline.`
    : "No device reports a position (Location /6 or GNSS /3430).";
  if (!points.length) return () => {};
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
  view().append(el("div", { class: "map panel" }, map));
  return () => {};
}

// --- events page ---------------------------------------------------------------------------------------

function renderEvents() {
  const type = el("select", { id: "event-type" }, el("option", { value: "" }, "all events"));
  for (const n of [
    "REGISTRATION", "UPDATE", "DEREGISTRATION", "EXPIRED", "SLEEPING", "AWAKE", "NOTIFICATION", "SEND",
    "OBSERVATION_ENDED", "REQUEST_DONE", "BOOTSTRAP_STARTED", "BOOTSTRAP_FINISHED", "BOOTSTRAP_FAILED",
  ]) {
    type.append(el("option", { value: n }, n));
  }
  const who = el("input", { type: "search", placeholder: "endpoint", id: "event-endpoint" });
  const pause = el("button", {}, "Pause");
  const status = el("span", { class: "muted", id: "event-status" });
  const list = el("ul", { class: "events", id: "event-log" });
  let paused = false;
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused) fill();
    else say();
  });
  const line = (e) =>
    el(
      "li",
      { "data-event": e.name, class: e.earlier ? "backlog" : "" },
      el("span", { class: "muted" }, new Date(e.at).toLocaleTimeString(), " "),
      el("span", { class: "name" }, e.name),
      " ",
      el("a", { href: `#/device/${enc(e.data.endpoint || "")}` }, e.data.endpoint || ""),
      " ",
      e.data.records ? e.data.records.map((r) => `${r.path}=${JSON.stringify(r.value)}`).join(" ") : e.data.reason || "",
    );
  const matches = (e) => (!type.value || e.name === type.value) && (!who.value || (e.data.endpoint || "").includes(who.value));
  // What the page is waiting for, always in words: the stream's state and what it has shown.
  function say() {
    const shown = list.querySelectorAll("li[data-event]").length;
    const earlier = state.events.filter((e) => e.earlier).length;
    let text;
    if (state.link === "connecting") text = "waiting for events… (connecting to the server)";
    else if (state.link === "reconnecting") text = "reconnecting… (the event stream was lost; events resume once it is back)";
    else if (paused) text = "paused: new events are not shown until Resume";
    else if (!state.events.length) text = "connected, no events yet: waiting for events…";
    else if (!shown) text = "connected: no event matches the filter yet, waiting for events…";
    else text = `live · ${shown} shown${earlier ? ` (the server's last ${earlier} before this page opened, then live)` : ""}`;
    status.textContent = text;
    status.dataset.link = state.link;
    list.classList.toggle("empty", !shown);
    if (!shown) list.replaceChildren(el("li", { class: "waiting" }, text));
  }
  function fill() {
    list.replaceChildren(...state.events.filter(matches).slice(-500).reverse().map(line));
    say();
  }
  type.addEventListener("change", fill);
  who.addEventListener("input", fill);
  view().replaceChildren(
    el("h1", {}, "Events"),
    el("div", { class: "toolbar" }, type, who, pause, status),
    el("div", { class: "panel" }, list),
  );
  fill();
  const listener = (e) => {
    if (!paused && matches(e)) {
      const waiting = list.querySelector("li.waiting");
      if (waiting) waiting.remove();
      list.prepend(line(e));
      while (list.children.length > 500) list.lastChild.remove();
    }
    say();
  };
  // A new connection starts again from the server's backlog: show the page afresh.
  const linkListener = () => fill();
  state.listeners.add(listener);
  state.linkListeners.add(linkListener);
  return () => {
    state.listeners.delete(listener);
    state.linkListeners.delete(linkListener);
  };
}

// --- bootstrap page ---------------------------------------------------------------------------------------

const SAMPLE_CONFIG = {
  servers: [{ uri: "coap://127.0.0.1:5683", shortServerId: 101, lifetime: 300, binding: "U", security: { mode: "nosec" } }],
  deletePaths: ["/0", "/1"],
};

async function renderBootstrap() {
  const status = el("p", { class: "muted" }, "Loading…");
  const configs = el("tbody", { id: "bootstrap-configs" });
  const sessions = el("tbody", { id: "bootstrap-sessions" });
  const endpoint = el("input", { placeholder: "endpoint (* for every endpoint without one)", size: "40" });
  const body = el("textarea", { rows: "8", cols: "90" }, JSON.stringify(SAMPLE_CONFIG, null, 2));
  const form = el(
    "form",
    {
      class: "panel",
      onsubmit: async (e) => {
        e.preventDefault();
        let config;
        try {
          config = JSON.parse(body.value);
        } catch (err) {
          showResult(`the configuration is not JSON: ${err.message}`, null);
          return;
        }
        const answer = await api(`/bootstrap/${enc(endpoint.value.trim())}`, { method: "PUT", body: config });
        showResult(`PUT configuration of ${endpoint.value}`, answer);
        fill();
      },
    },
    el("h2", {}, "Add or replace a configuration"),
    el("div", { class: "toolbar" }, endpoint, el("button", { class: "primary" }, "Save")),
    body,
  );
  view().replaceChildren(
    el("h1", {}, "Bootstrap"),
    status,
    el("div", { class: "panel", id: "result-panel" }, el("div", { id: "result", class: "muted" }, "")),
    el(
      "div",
      { class: "panel" },
      el("h2", {}, "Configurations"),
      el("table", {}, el("thead", {}, el("tr", {}, ["Endpoint", "Servers", "Delete first", ""].map((h) => el("th", {}, h)))), configs),
    ),
    form,
    el(
      "div",
      { class: "panel" },
      el("h2", {}, "Recent sessions"),
      el(
        "table",
        {},
        el("thead", {}, el("tr", {}, ["Endpoint", "Kind", "Status", "Started", "Ended", "Steps", "Reason"].map((h) => el("th", {}, h)))),
        sessions,
      ),
    ),
  );
  async function fill() {
    const { status: code, data } = await api("/bootstrap");
    if (code !== 200) {
      status.textContent = code === 404 ? "No bootstrap server runs beside this server (lwm2m server --bootstrap-port)." : `HTTP ${code}`;
      return;
    }
    status.textContent = `${data.configs.length} configurations, ${data.sessions.length} recent sessions`;
    configs.replaceChildren(
      ...data.configs.map((c) => {
        const servers = (c.config.servers || []).map((sv) => `${sv.uri} (#${sv.shortServerId}, ${(sv.security || {}).mode || "nosec"})`);
        return el(
          "tr",
          { "data-config": c.endpoint },
          el("td", {}, c.default ? "* (default)" : c.endpoint),
          el("td", {}, servers.join(", ")),
          el("td", { class: "muted" }, (c.config.deletePaths || []).join(" ")),
          el(
            "td",
            {},
            el(
              "button",
              {
                onclick: async () => {
                  if (!confirm(`Remove the configuration of ${c.endpoint}?`)) return;
                  showResult(`DELETE configuration of ${c.endpoint}`, await api(`/bootstrap/${enc(c.endpoint)}`, { method: "DELETE" }));
                  fill();
                },
              },
              "Remove",
            ),
          ),
        );
      }),
    );
    sessions.replaceChildren(
      ...data.sessions.map((x) =>
        el(
          "tr",
          { "data-session": x.id },
          el("td", {}, x.endpoint),
          el("td", {}, x.kind),
          el("td", {}, el("span", { class: `state ${x.status === "finished" ? "online" : x.status === "failed" ? "offline" : "sleeping"}` }, x.status)),
          el("td", {}, ago(x.startedAt)),
          el("td", {}, x.endedAt ? ago(x.endedAt) : "–"),
          el("td", { class: "muted" }, String((x.steps || []).length)),
          el("td", { class: "error" }, x.reason || ""),
        ),
      ),
    );
  }
  await fill();
  const listener = (e) => {
    if (e.name.startsWith("BOOTSTRAP_")) fill();
  };
  state.listeners.add(listener);
  return () => state.listeners.delete(listener);
}

// --- router ----------------------------------------------------------------------------------------------

let leave = () => {};

async function route() {
  leave();
  leave = () => {};
  const hash = location.hash || "#/";
  let name = "fleet";
  if (hash.startsWith("#/device/")) name = "device";
  else if (hash === "#/map") name = "map";
  else if (hash === "#/events") name = "events";
  else if (hash === "#/bootstrap") name = "bootstrap";
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === name);
  try {
    if (name === "device") leave = await renderDevice(decodeURIComponent(hash.slice("#/device/".length)));
    else if (name === "map") leave = await renderMap();
    else if (name === "events") leave = renderEvents();
    else if (name === "bootstrap") leave = await renderBootstrap();
    else leave = await renderFleet();
  } catch (e) {
    view().replaceChildren(el("h1", {}, "Error"), el("p", { class: "error" }, String(e)));
  }
}

window.addEventListener("hashchange", route);
streamEvents();
route();
