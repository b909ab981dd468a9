// The device page: a client's registration and objects, one table of resources per instance,
// values filled by a Read of each instance and kept live by notifications.

import { api, devicePath, enc, model } from "../lib/api.js";
import { drawChart } from "../lib/chart.js";
import { ago, el, view } from "../lib/dom.js";
import { observedPaths } from "../lib/observations.js";
import { run } from "../lib/operations.js";
import { showResult } from "../lib/results.js";
import { subscribe } from "../lib/stream.js";
import { display, onValues, showDevice, shownDevice, storeRecords } from "../lib/values.js";
import { attributesForm, createForm } from "./forms.js";
import { resourceRow } from "./resource.js";
import { labelsLine } from "./labels.js";
import { tracePanel } from "./trace.js";

// Objects the page does not show: Security (/0) and OSCORE (/21) hold keys.
const HIDDEN = new Set([0, 21]);

// The registration's object links as object id -> {ver, instances}, by id.
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

// Fill the page with the device's current values, one instance at a time (quietly).
async function readAll(ep, objects) {
  for (const [oid, info] of objects) {
    if (HIDDEN.has(oid)) continue;
    for (const iid of info.instances) {
      if (shownDevice() !== ep) return;
      const { status, data } = await api(devicePath(ep, `/${oid}/${iid}`));
      if (status === 200 && data && data.records) storeRecords(ep, data.records, false);
    }
  }
}

// A resource's cell and chart follow its values; a fresh (notified) value flashes.
function updateCell(ep, path, fresh, resources) {
  const cell = document.querySelector(`[data-value="${CSS.escape(path)}"]`);
  if (!cell) return;
  cell.textContent = display(ep, path, resources.get(path));
  if (fresh) {
    cell.classList.remove("fresh");
    void cell.offsetWidth; // restarts the CSS animation
    cell.classList.add("fresh");
  }
  drawChart(ep, path);
}

function instanceBox(ep, oid, iid, m, resources) {
  const ipath = `/${oid}/${iid}`;
  const tbody = el("tbody");
  for (const r of (m && m.resources) || []) {
    resources.set(`${ipath}/${r.id}`, r);
    tbody.append(resourceRow(ep, oid, iid, r));
  }
  return el(
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
  );
}

async function objectSection(ep, oid, info, resources) {
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
  for (const iid of info.instances) section.append(instanceBox(ep, oid, iid, m, resources));
  return section;
}

// A gateway's end devices (LwM2M Gateway, object 25): one row each, with a Read of its own Device
// object through /api/clients/{gateway}/devices/{prefix}/3/0.
function endDevicesSection(ep, devices) {
  const rows = devices.map((d) =>
    el(
      "tr",
      { class: "end-device", "data-prefix": d.prefix },
      el("td", {}, el("code", {}, `/${d.prefix}`)),
      el("td", {}, d.deviceId),
      el("td", { class: "muted" }, d.objects),
      el(
        "td",
        {},
        el(
          "button",
          { type: "button", onclick: () => run(ep, "Read", `/devices/${enc(d.prefix)}/3/0`) },
          "Read Device",
        ),
      ),
    ),
  );
  return el(
    "section",
    { class: "panel", id: "end-devices" },
    el("h2", {}, `End devices (${devices.length})`),
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, el("th", {}, "prefix"), el("th", {}, "device id"), el("th", {}, "objects"), el("th", {}))),
      el("tbody", {}, ...rows),
    ),
  );
}

export async function renderDevice(ep) {
  const { status, data: reg } = await api(`/clients/${enc(ep)}`);
  if (status !== 200) {
    view().replaceChildren(el("h1", {}, ep), el("p", { class: "error" }, (reg && reg.error) || `HTTP ${status}`));
    return () => {};
  }
  const resources = new Map(); // "/o/i/r" -> the resource's definition
  showDevice(ep, resources);
  const stopValues = onValues((of, path, fresh) => {
    if (of === ep && shownDevice() === ep) updateCell(ep, path, fresh, resources);
  });
  const stateBadge = el("span", { class: `state ${reg.sleeping ? "sleeping" : "online"}`, id: "device-state" }, reg.sleeping ? "sleeping" : "online");
  const objects = groupObjects(reg);
  const sections = [];
  for (const [oid, info] of objects) {
    if (!HIDDEN.has(oid)) sections.push(await objectSection(ep, oid, info, resources));
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
  // Two tabs: the objects, and the message trace (made when first opened).
  const objectsPane = el("div", { id: "device-objects" });
  const tracePane = el("div", { id: "device-trace", hidden: true });
  let trace = null;
  const tabButtons = [];
  const openTab = (name) => {
    objectsPane.hidden = name !== "objects";
    tracePane.hidden = name !== "trace";
    for (const b of tabButtons) b.classList.toggle("active", b.dataset.tab === name);
    if (name === "trace" && !trace) {
      trace = tracePanel(ep);
      tracePane.append(trace.node);
    }
  };
  for (const [name, label] of [["objects", "Objects"], ["trace", "Trace"]]) {
    tabButtons.push(el("button", { type: "button", class: "tab", "data-tab": name, onclick: () => openTab(name) }, label));
  }
  tabButtons[0].classList.add("active");
  objectsPane.append(
    el("div", { class: "toolbar" }, compositeButton, el("a", { href: "#/" }, "← fleet")),
    el(
      "div",
      { class: "panel sticky", id: "result-panel" },
      el("div", { id: "result", class: "muted" }, "Results show under the row they belong to; the last one also here."),
    ),
    ...((reg.endDevices || []).length ? [endDevicesSection(ep, reg.endDevices)] : []),
    ...sections,
  );
  view().replaceChildren(
    el("h1", {}, ep, " ", stateBadge),
    el(
      "p",
      { class: "muted" },
      `LwM2M ${reg.lwm2mVersion} · binding ${reg.binding}${reg.queueMode ? " (queue mode)" : ""} · ${reg.address} · lifetime ${reg.lifetime} s · registered ${ago(reg.registeredAt)}`,
    ),
    labelsLine(ep),
    el("div", { class: "tabs", role: "tablist" }, ...tabButtons),
    objectsPane,
    tracePane,
  );
  for (const path of observedPaths(ep)) drawChart(ep, path);
  if (!reg.sleeping) readAll(ep, objects);
  const unsubscribe = subscribe((e) => {
    if (e.data.endpoint !== ep) return;
    if (e.name === "SLEEPING" || e.name === "AWAKE") {
      const asleep = e.name === "SLEEPING";
      stateBadge.textContent = asleep ? "sleeping" : "online";
      stateBadge.className = `state ${asleep ? "sleeping" : "online"}`;
    } else if (e.name === "DEREGISTRATION" || e.name === "EXPIRED") {
      stateBadge.textContent = "offline";
      stateBadge.className = "state offline";
    }
  });
  return () => {
    unsubscribe();
    stopValues();
    showDevice(null);
    if (trace) trace.leave();
  };
}
