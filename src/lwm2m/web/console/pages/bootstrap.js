// The bootstrap page: the configurations the bootstrap server gives devices (add, replace,
// remove) and its recent sessions, refreshed on each BOOTSTRAP_* event.

import { api, enc } from "../lib/api.js";
import { ago, el, view } from "../lib/dom.js";
import { showResult } from "../lib/results.js";
import { subscribe } from "../lib/stream.js";

const SAMPLE_CONFIG = {
  servers: [{ uri: "coap://127.0.0.1:5683", shortServerId: 101, lifetime: 300, binding: "U", security: { mode: "nosec" } }],
  deletePaths: ["/0", "/1"],
};

function sessionRow(x) {
  const badge = x.status === "finished" ? "online" : x.status === "failed" ? "offline" : "sleeping";
  return el(
    "tr",
    { "data-session": x.id },
    el("td", {}, x.endpoint),
    el("td", {}, x.kind),
    el("td", {}, el("span", { class: `state ${badge}` }, x.status)),
    el("td", {}, ago(x.startedAt)),
    el("td", {}, x.endedAt ? ago(x.endedAt) : "–"),
    el("td", { class: "muted" }, String((x.steps || []).length)),
    el("td", { class: "error" }, x.reason || ""),
  );
}

export async function renderBootstrap() {
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

  function configRow(c) {
    const servers = (c.config.servers || []).map((sv) => `${sv.uri} (#${sv.shortServerId}, ${(sv.security || {}).mode || "nosec"})`);
    const remove = async () => {
      if (!confirm(`Remove the configuration of ${c.endpoint}?`)) return;
      showResult(`DELETE configuration of ${c.endpoint}`, await api(`/bootstrap/${enc(c.endpoint)}`, { method: "DELETE" }));
      fill();
    };
    return el(
      "tr",
      { "data-config": c.endpoint },
      el("td", {}, c.default ? "* (default)" : c.endpoint),
      el("td", {}, servers.join(", ")),
      el("td", { class: "muted" }, (c.config.deletePaths || []).join(" ")),
      el("td", {}, el("button", { onclick: remove }, "Remove")),
    );
  }

  async function fill() {
    const { status: code, data } = await api("/bootstrap");
    if (code !== 200) {
      status.textContent = code === 404 ? "No bootstrap server runs beside this server (lwm2m server --bootstrap-port)." : `HTTP ${code}`;
      return;
    }
    status.textContent = `${data.configs.length} configurations, ${data.sessions.length} recent sessions`;
    configs.replaceChildren(...data.configs.map(configRow));
    sessions.replaceChildren(...data.sessions.map(sessionRow));
  }

  await fill();
  return subscribe((e) => {
    if (e.name.startsWith("BOOTSTRAP_")) fill();
  });
}
