// The campaigns pages: firmware update campaigns listed with their status and progress
// (GET /api/campaigns), one started (POST /api/campaigns), and one campaign's page
// (GET /api/campaigns/ID): its devices counted by state, each wave's progress, the devices
// that failed with their Update Result, and pause / resume / cancel. Both pages follow the
// CAMPAIGN_* events of the live stream (lib/stream.js) and read the campaign again on each.

import { api, enc } from "../lib/api.js";
import { ago, el, view } from "../lib/dom.js";
import { subscribe } from "../lib/stream.js";
import { errorText } from "./firmware.js";

// A device's states in the order it goes through them (the Firmware Update object's State,
// /5/0/3, as the campaign follows it), then the ends.
export const STATES = ["pending", "waiting", "downloading", "downloaded", "updating", "succeeded", "failed", "cancelled", "skipped"];
const ENDED = new Set(["succeeded", "failed", "cancelled", "skipped"]);

// A count ("5") or a percentage ("5%") as the API takes it; undefined when empty. Throws on anything else.
export function shareOf(text, what) {
  const t = String(text).trim();
  if (!t) return undefined;
  if (/^\d+$/.test(t)) return Number(t);
  if (/^\d+(\.\d+)?%$/.test(t)) return t;
  throw new Error(`${what}: a count (5) or a percentage (5%)`);
}

// The devices of a campaign that reached an end, over all of them: 0..1.
export function doneShare(counts, devices) {
  if (!devices) return 1;
  let done = 0;
  for (const [state, n] of Object.entries(counts || {})) if (ENDED.has(state)) done += n;
  return done / devices;
}

function countsText(counts) {
  const parts = STATES.filter((s) => counts[s]).map((s) => `${s} ${counts[s]}`);
  return parts.length ? parts.join(" · ") : "no devices";
}

function bar(share) {
  return el("progress", { max: "100", value: String(Math.round(share * 100)) }, `${Math.round(share * 100)} %`);
}

// A wave's name: the first is the canary when the campaign has one (a count or a percentage
// above 0), the batches after it are numbered from 1.
export function waveName(index, waves) {
  const canary = Boolean(waves && (waves.canary > 0 || waves.canaryPercent > 0));
  if (canary) return index === 0 ? "canary" : `wave ${index}`;
  return `wave ${index + 1}`;
}

// Calls `refresh` on the CAMPAIGN_* events that `wanted` accepts, at most once a second: a
// campaign's page reads all its devices again, and a large campaign sends many events.
function onCampaignEvents(wanted, refresh) {
  let timer = null;
  const unsubscribe = subscribe((event) => {
    if (!event.name.startsWith("CAMPAIGN_") || !wanted(event.data)) return;
    if (timer === null)
      timer = setTimeout(() => {
        timer = null;
        refresh();
      }, 1000);
  });
  return () => {
    unsubscribe();
    if (timer !== null) clearTimeout(timer);
  };
}

function campaignRow(c, packages) {
  const pkg = packages.get(c.packageId);
  return el(
    "tr",
    { class: "client", "data-campaign": c.id, onclick: () => (location.hash = `#/campaign/${enc(c.id)}`) },
    el("td", {}, el("a", { href: `#/campaign/${enc(c.id)}` }, c.id)),
    el("td", {}, el("span", { class: `campaign-status ${c.status}` }, c.status), c.reason ? el("div", { class: "muted" }, c.reason) : null),
    el("td", {}, pkg ? `${pkg.name} ${pkg.version}` : c.packageId),
    el("td", {}, bar(doneShare(c.counts, c.devices)), ` ${c.devices} devices`, el("div", { class: "muted" }, countsText(c.counts))),
    el("td", {}, ago(c.createdAt)),
  );
}

function field(label, input) {
  return el("label", { class: "field" }, el("span", { class: "muted" }, label), input);
}

export async function renderCampaigns() {
  const status = el("p", { class: "muted", id: "campaigns-count" }, "Loading…");
  const note = el("p", { id: "campaign-message", class: "muted" }, "");
  const rows = el("tbody", { id: "campaigns" });
  const packageSelect = el("select", { id: "campaign-package", required: true });
  const endpoints = el("input", { id: "campaign-endpoints", value: "*", size: "20", title: "endpoint name glob: * ? [a-z]" });
  // Devices whose current firmware version (/3/0/3) is this one are skipped.
  const versionNot = el("input", { id: "campaign-version-not", size: "10", placeholder: "any", title: "skip the devices whose version (/3/0/3) is this" });
  const delivery = el(
    "select",
    { id: "campaign-delivery" },
    el("option", { value: "auto" }, "auto (what /5/0/9 says the device supports)"),
    el("option", { value: "pull" }, "pull (Package URI, /5/0/1)"),
    el("option", { value: "push" }, "push (Block1 write of /5/0/0)"),
  );
  const canary = el("input", { id: "campaign-canary", value: "1", size: "5", title: "a count or a percentage (5%); 0: no canary" });
  const batch = el("input", { id: "campaign-batch", type: "number", min: "1", value: "100", style: "width:6rem" });
  const inFlight = el("input", { id: "campaign-in-flight", type: "number", min: "1", value: "10", style: "width:6rem" });
  const halt = el("input", { id: "campaign-halt", size: "5", placeholder: "never", title: "failures that halt the campaign: a count or a percentage" });
  const windowStart = el("input", { id: "campaign-window-start", type: "time", title: "UTC" });
  const windowEnd = el("input", { id: "campaign-window-end", type: "time", title: "UTC" });
  let packages = new Map();

  async function fill() {
    const [listed, stored] = await Promise.all([api("/campaigns"), api("/firmware")]);
    if (stored.status === 200) {
      packages = new Map(stored.data.map((p) => [p.id, p]));
      const chosen = packageSelect.value;
      packageSelect.replaceChildren(
        stored.data.length ? null : el("option", { value: "" }, "no package: upload one on the Firmware page"),
        ...stored.data.map((p) => el("option", { value: p.id, selected: p.id === chosen }, `${p.name} ${p.version} (${p.id.slice(0, 8)})`)),
      );
    }
    if (listed.status !== 200) {
      status.textContent = errorText(listed);
      return;
    }
    const running = listed.data.filter((c) => c.status === "running").length;
    status.textContent = `${listed.data.length} campaigns, ${running} running`;
    rows.replaceChildren(...listed.data.map((c) => campaignRow(c, packages)));
  }

  // The body of POST /api/campaigns the form describes (web/bodies.py CampaignBody).
  function body() {
    const out = {
      packageId: packageSelect.value,
      target: { endpoints: endpoints.value.trim() || "*" },
      delivery: delivery.value,
      waves: { canary: shareOf(canary.value, "canary") ?? 0, batch: Number(batch.value), inFlight: Number(inFlight.value) },
    };
    if (versionNot.value.trim()) out.target.versionNotEqual = versionNot.value.trim();
    const haltAfter = shareOf(halt.value, "halt after");
    if (haltAfter !== undefined) out.haltAfter = haltAfter;
    if (windowStart.value || windowEnd.value) out.window = { start: windowStart.value, end: windowEnd.value };
    return out;
  }

  const form = el(
    "form",
    {
      class: "panel",
      id: "campaign-form",
      onsubmit: async (e) => {
        e.preventDefault();
        let sent;
        try {
          sent = body();
        } catch (err) {
          note.textContent = err.message;
          note.className = "error";
          return;
        }
        const answer = await api("/campaigns", { method: "POST", body: sent });
        if (answer.status === 201) location.hash = `#/campaign/${enc(answer.data.id)}`;
        else {
          note.textContent = errorText(answer);
          note.className = "error";
        }
      },
    },
    el("h2", {}, "Start a campaign"),
    el("div", { class: "toolbar" }, field("Package", packageSelect), field("Endpoints", endpoints), field("Version is not", versionNot), field("Delivery", delivery)),
    el(
      "div",
      { class: "toolbar" },
      field("Canary", canary),
      field("Batch", batch),
      field("In flight", inFlight),
      field("Halt after failures", halt),
      field("Window from (UTC)", windowStart),
      field("to", windowEnd),
    ),
    el("button", { class: "primary", id: "campaign-start" }, "Start"),
  );
  view().replaceChildren(
    el("h1", {}, "Campaigns"),
    status,
    note,
    el(
      "div",
      { class: "panel" },
      el("table", {}, el("thead", {}, el("tr", {}, ["Campaign", "Status", "Package", "Progress", "Started"].map((h) => el("th", {}, h)))), rows),
    ),
    form,
  );
  await fill();
  return onCampaignEvents(() => true, fill);
}

// Which actions a campaign's status allows (fleet/campaigns.py: 409 otherwise).
const ACTIONS = {
  pause: new Set(["running"]),
  resume: new Set(["paused", "halted"]),
  cancel: new Set(["running", "paused", "halted"]),
};

function waveRow(wave, index, spec) {
  const ended = wave.succeeded + wave.failed + wave.cancelled + wave.skipped;
  return el(
    "tr",
    { "data-wave": String(index) },
    el("td", {}, waveName(index, spec.waves)),
    el("td", {}, bar(wave.devices ? ended / wave.devices : 1), ` ${ended}/${wave.devices}`),
    el("td", {}, String(wave.succeeded)),
    el("td", { class: wave.failed ? "error" : "" }, String(wave.failed)),
    el("td", {}, String(wave.cancelled + wave.skipped)),
    el("td", {}, String(wave.pending)),
  );
}

function failureRow(device) {
  const last = device.steps.length ? device.steps[device.steps.length - 1] : null;
  return el(
    "tr",
    { "data-failed": device.endpoint },
    el("td", {}, el("a", { href: `#/device/${enc(device.endpoint)}` }, device.endpoint)),
    el("td", {}, String(device.wave)),
    el("td", {}, String(device.attempts)),
    // The Update Result (/5/0/5) and its meaning (LwM2M-TS-Core 1.2 §E.6, object 5 resource 5).
    el("td", { class: "value" }, device.result === null ? "–" : String(device.result)),
    el("td", {}, device.resultText || "no Update Result"),
    el("td", { class: "muted" }, last ? `${last[1]} ${ago(last[0])}` : ""),
  );
}

export async function renderCampaign(id) {
  const heading = el("h1", {}, `Campaign ${id}`);
  const status = el("p", { id: "campaign-status" }, "Loading…");
  const note = el("p", { id: "campaign-message", class: "muted" }, "");
  const counts = el("tbody", { id: "campaign-counts" });
  const waves = el("tbody", { id: "campaign-waves" });
  const failures = el("tbody", { id: "campaign-failures" });
  const failedCount = el("span", { class: "muted" }, "");
  const buttons = {};
  let packageName = null; // "name version", asked once

  async function fill() {
    const answer = await api(`/campaigns/${enc(id)}`);
    if (answer.status !== 200) {
      status.textContent = errorText(answer);
      status.className = "error";
      return;
    }
    const c = answer.data;
    if (packageName === null) {
      const pkg = await api(`/firmware/${enc(c.packageId)}`);
      packageName = pkg.status === 200 ? `${pkg.data.name} ${pkg.data.version}` : `${c.packageId} (deleted)`;
    }
    const running = c.wave < c.waves.length ? ` · ${waveName(c.wave, c.spec.waves)} of ${c.waves.length}` : "";
    status.replaceChildren(
      el("span", { class: `campaign-status ${c.status}`, id: "campaign-state" }, c.status),
      c.reason ? ` ${c.reason}` : "",
      el("span", { class: "muted" }, ` · ${packageName} · ${c.devices} devices${running} · started ${ago(c.createdAt)}`),
    );
    counts.replaceChildren(
      ...STATES.filter((s) => c.counts[s]).map((s) => el("tr", { "data-state": s }, el("td", {}, s), el("td", {}, String(c.counts[s])))),
    );
    waves.replaceChildren(...c.waves.map((wave, i) => waveRow(wave, i, c.spec)));
    const failed = c.deviceDetail.filter((d) => d.state === "failed");
    failedCount.textContent = ` ${failed.length}`;
    failures.replaceChildren(...failed.map(failureRow));
    for (const [action, button] of Object.entries(buttons)) button.disabled = !ACTIONS[action].has(c.status);
  }

  for (const action of Object.keys(ACTIONS)) {
    buttons[action] = el(
      "button",
      {
        id: `campaign-${action}`,
        disabled: true,
        onclick: async () => {
          if (action === "cancel" && !confirm(`Cancel campaign ${id}? The devices not done are cancelled.`)) return;
          const answer = await api(`/campaigns/${enc(id)}/${action}`, { method: "POST" });
          note.textContent = answer.status < 300 ? `${action}: ${answer.data.status}` : errorText(answer);
          note.className = answer.status < 300 ? "muted" : "error";
          fill();
        },
      },
      action[0].toUpperCase() + action.slice(1),
    );
  }
  view().replaceChildren(
    el("p", {}, el("a", { href: "#/campaigns" }, "← Campaigns")),
    heading,
    status,
    el("div", { class: "toolbar" }, buttons.pause, buttons.resume, buttons.cancel),
    note,
    el(
      "div",
      { class: "panel" },
      el("h2", {}, "Devices by state"),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "State"), el("th", {}, "Devices"))), counts),
    ),
    el(
      "div",
      { class: "panel" },
      el("h2", {}, "Waves"),
      el(
        "table",
        {},
        el("thead", {}, el("tr", {}, ["Wave", "Progress", "Succeeded", "Failed", "Cancelled / skipped", "Pending"].map((h) => el("th", {}, h)))),
        waves,
      ),
    ),
    el(
      "div",
      { class: "panel" },
      el("h2", {}, "Failed devices", failedCount),
      el(
        "table",
        {},
        el("thead", {}, el("tr", {}, ["Endpoint", "Wave", "Tries", "Update Result", "Meaning", "Last step"].map((h) => el("th", {}, h)))),
        failures,
      ),
    ),
  );
  await fill();
  return onCampaignEvents((data) => data.campaign === id, fill);
}
