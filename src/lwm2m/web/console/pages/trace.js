// The device page's Trace tab: the device's CoAP message trace (GET/PUT/DELETE
// /api/clients/EP/trace), its messages as a table, kept live by the trace's own event stream
// (GET /api/clients/EP/trace/events: TRACE per message, TRACE_END when it goes off). Read through
// fetch rather than EventSource, which cannot send the bearer token.

import { api, authHeaders, enc } from "../lib/api.js";
import { el } from "../lib/dom.js";

const SHOWN = 500; // messages the table keeps, newest first

function entryRow(e) {
  const time = new Date(e.at * 1000).toLocaleTimeString(undefined, { hour12: false });
  const ms = String(Math.floor((e.at % 1) * 1000)).padStart(3, "0");
  const preview = e.preview === undefined ? "" : e.previewFormat === "hex" ? `0x${e.preview}` : e.preview;
  return el(
    "tr",
    { class: `trace-${e.direction}`, "data-mid": e.mid === undefined ? "" : String(e.mid) },
    el("td", { class: "muted" }, `${time}.${ms}`),
    el("td", {}, e.direction === "in" ? "← in" : "→ out"),
    el("td", {}, e.type || ""),
    el("td", {}, e.error || e.code || ""),
    el("td", {}, e.mid === undefined ? "" : String(e.mid)),
    el("td", { class: "muted" }, e.token || ""),
    el("td", {}, (e.options || []).join(", ")),
    el("td", {}, el("code", {}, preview)),
    el("td", { class: "muted" }, `${e.size} B`),
  );
}

// The tab's content and the function that leaves it (ends the stream).
export function tracePanel(ep) {
  const path = `/clients/${enc(ep)}/trace`;
  const state = el("span", { class: "muted", id: "trace-state" }, "");
  const ttl = el("input", { id: "trace-ttl", type: "number", min: "1", max: "86400", value: "600", size: "6", title: "seconds it stays on" });
  const body = el("tbody", { id: "trace-entries" });
  let reader = null; // the event stream's reader, while on
  let closed = false;

  function show(s) {
    const until = s.until ? new Date(s.until * 1000).toLocaleTimeString() : "";
    state.textContent = s.on ? `on until ${until}` : "off";
    state.className = s.on ? "state online" : "muted";
    startButton.textContent = s.on ? "Extend" : "Start trace";
    stopButton.disabled = !s.on;
  }

  function add(entry) {
    body.prepend(entryRow(entry));
    while (body.children.length > SHOWN) body.lastElementChild.remove();
  }

  async function follow() {
    if (reader || closed) return;
    const res = await fetch(`/api${path}/events`, { headers: authHeaders() });
    if (!res.ok || !res.body) return;
    reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const chunk = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const name = (chunk.match(/^event: (.*)$/m) || [])[1];
          const data = (chunk.match(/^data: (.*)$/m) || [])[1];
          if (!name || !data) continue;
          if (name === "TRACE") add(JSON.parse(data));
          else if (name === "TRACE_END") show({ on: false });
        }
      }
    } catch (e) {
      // left, or the server went away
    }
    reader = null;
  }

  async function load() {
    const { status, data } = await api(path);
    if (status !== 200) {
      state.textContent = (data && data.error) || `HTTP ${status}`;
      return;
    }
    show(data);
    body.replaceChildren();
    for (const e of data.entries) add(e);
    if (data.on) follow();
  }

  const startButton = el(
    "button",
    {
      id: "trace-start",
      class: "primary",
      onclick: async () => {
        const { status, data } = await api(path, { method: "PUT", query: { ttl: ttl.value || "600" } });
        if (status !== 200) {
          state.textContent = (data && data.error) || `HTTP ${status}`;
          state.className = "error";
          return;
        }
        show(data);
        follow();
      },
    },
    "Start trace",
  );
  const stopButton = el(
    "button",
    {
      id: "trace-stop",
      onclick: async () => {
        await api(path, { method: "DELETE" });
        show({ on: false });
      },
    },
    "Stop",
  );
  const node = el(
    "div",
    { class: "panel", id: "trace-panel" },
    el("div", { class: "toolbar" }, el("h2", {}, "Message trace"), startButton, el("label", {}, "for ", ttl, " s"), stopButton, state),
    el(
      "p",
      { class: "muted" },
      "Every CoAP message to and from this device while the trace is on (over DTLS: inside the session), newest first; it switches itself off after its time.",
    ),
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, ["Time", "", "Type", "Code", "MID", "Token", "Options", "Payload (first 64 bytes)", "Size"].map((h) => el("th", {}, h)))),
      body,
    ),
  );
  load();
  return {
    node,
    leave: () => {
      closed = true;
      if (reader) reader.cancel();
    },
  };
}
