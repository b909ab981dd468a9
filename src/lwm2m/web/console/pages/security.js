// The security page: how each device authenticates (GET /api/security/clients), add or replace
// an entry (PSK, raw public key, X.509; PUT /api/security/clients/EP) and remove one (DELETE).
// A key goes to the server and never comes back: the list shows only the PSK identity, a
// short hint of the key and the kind of credential.

import { api, enc } from "../lib/api.js";
import { el, view } from "../lib/dom.js";
import { showResult } from "../lib/results.js";

const MODES = {
  psk: "Pre-shared key",
  rpk: "Raw public key",
  x509: "X.509 certificate",
};

function entryRow(info, fill) {
  const detail =
    info.mode === "psk"
      ? `identity ${info.pskIdentity} · key ${info.pskKeyHint || "set"}`
      : info.mode === "rpk"
        ? `public key of ${String(info.rpk || "").length / 2} bytes`
        : info.mode === "x509"
          ? "a certificate with the endpoint as subject CN"
          : "plain CoAP";
  const remove = async () => {
    if (!confirm(`Remove the security information of ${info.endpoint}? Its DTLS sessions end.`)) return;
    showResult(`DELETE security of ${info.endpoint}`, await api(`/security/clients/${enc(info.endpoint)}`, { method: "DELETE" }));
    fill();
  };
  return el(
    "tr",
    { "data-security": info.endpoint },
    el("td", {}, info.endpoint),
    el("td", {}, MODES[info.mode] || info.mode),
    el("td", { class: "muted" }, detail),
    el("td", {}, el("button", { onclick: remove }, "Remove")),
  );
}

export async function renderSecurity() {
  const status = el("p", { class: "muted" }, "Loading…");
  const rows = el("tbody", { id: "security-entries" });
  const endpoint = el("input", { id: "security-endpoint", placeholder: "endpoint", size: "30", required: true });
  const mode = el("select", { id: "security-mode" }, ...Object.entries(MODES).map(([v, t]) => el("option", { value: v }, t)));
  const identity = el("input", { id: "security-identity", placeholder: "PSK identity", size: "24", autocomplete: "off" });
  const key = el("input", { id: "security-key", type: "password", placeholder: "PSK key (hex)", size: "40", autocomplete: "off" });
  const rpk = el("textarea", { id: "security-rpk", rows: "3", cols: "70", placeholder: "hex of the device's DER SubjectPublicKeyInfo" });
  const pskFields = el("div", { "data-fields": "psk" }, el("div", { class: "toolbar" }, identity, key));
  const rpkFields = el("div", { "data-fields": "rpk", hidden: true }, rpk);
  const x509Fields = el(
    "p",
    { class: "muted", "data-fields": "x509", hidden: true },
    "The device presents a certificate whose subject CN is its endpoint name, from an authority the server trusts (lwm2m server --ca).",
  );
  const fields = { psk: pskFields, rpk: rpkFields, x509: x509Fields };
  mode.addEventListener("change", () => {
    for (const [name, node] of Object.entries(fields)) node.hidden = name !== mode.value;
  });

  async function fill() {
    const { status: code, data } = await api("/security/clients");
    if (code !== 200) {
      status.textContent = (data && data.error) || `HTTP ${code}`;
      return;
    }
    const secured = data.filter((info) => info.mode !== "nosec");
    status.textContent = `${secured.length} devices with credentials${data.length > secured.length ? `, ${data.length - secured.length} plain CoAP` : ""}`;
    rows.replaceChildren(...data.map((info) => entryRow(info, fill)));
  }

  const form = el(
    "form",
    {
      class: "panel",
      id: "security-form",
      onsubmit: async (e) => {
        e.preventDefault();
        const ep = endpoint.value.trim();
        if (!ep) return;
        let body;
        if (mode.value === "psk") body = { pskIdentity: identity.value, pskKey: key.value.trim() };
        else if (mode.value === "rpk") body = { rpk: rpk.value.replace(/\s+/g, "") };
        else body = { x509: true };
        const answer = await api(`/security/clients/${enc(ep)}`, { method: "PUT", body });
        // The answer never holds the key; the fields with a secret are emptied once it is stored.
        showResult(`PUT security of ${ep}`, answer);
        if (answer.status < 300) {
          key.value = "";
          rpk.value = "";
          fill();
        }
      },
    },
    el("h2", {}, "Add or replace a device's credentials"),
    el("div", { class: "toolbar" }, endpoint, mode, el("button", { class: "primary", id: "security-save" }, "Save")),
    pskFields,
    rpkFields,
    x509Fields,
  );
  view().replaceChildren(
    el("h1", {}, "Security"),
    status,
    el("div", { class: "panel", id: "result-panel" }, el("div", { id: "result", class: "muted" }, "")),
    el(
      "div",
      { class: "panel" },
      el("h2", {}, "Device credentials"),
      el("table", {}, el("thead", {}, el("tr", {}, ["Endpoint", "Kind", "Credential (keys are never shown)", ""].map((h) => el("th", {}, h)))), rows),
    ),
    form,
  );
  await fill();
  return () => {};
}
