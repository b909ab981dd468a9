// The firmware page: the packages the server hosts (GET /api/firmware), upload one (the file as
// the raw body of POST /api/firmware?name=&version=) and delete one (DELETE /api/firmware/ID).
// Devices pull a package from its /fw/ID URIs (the Firmware Update object's Package URI, /5/0/1).

import { api, askToken, authHeaders, enc } from "../lib/api.js";
import { ago, el, view } from "../lib/dom.js";

// Bytes as people read them: 980 B, 12.5 KiB, 1.0 MiB.
export function sizeText(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

// The message of an error answer ({"error": "..."}), or its status.
export function errorText({ status, data }) {
  return (data && data.error) || `HTTP ${status}`;
}

// POST /api/firmware with the file's bytes as the body (application/octet-stream, not JSON).
async function upload(file, name, version) {
  const query = new URLSearchParams({ name, version });
  const res = await fetch(`/api/firmware?${query}`, {
    method: "POST",
    headers: { ...authHeaders(), "Content-Type": "application/octet-stream" },
    body: file,
  });
  if (res.status === 401) {
    await askToken();
    return upload(file, name, version);
  }
  let data = null;
  try {
    data = await res.json();
  } catch (e) {
    data = null;
  }
  return { status: res.status, data };
}

function packageRow(pkg, fill, message) {
  const remove = async () => {
    if (!confirm(`Delete ${pkg.name} ${pkg.version}? Its URIs answer 404 from now on.`)) return;
    const answer = await api(`/firmware/${enc(pkg.id)}`, { method: "DELETE" });
    message(answer.status < 300 ? `Deleted ${pkg.name} ${pkg.version}` : errorText(answer), answer.status >= 300);
    fill();
  };
  return el(
    "tr",
    { "data-package": pkg.id },
    el("td", {}, pkg.name),
    el("td", {}, pkg.version),
    el("td", {}, sizeText(pkg.size)),
    el("td", { class: "value", title: pkg.sha256 }, pkg.sha256.slice(0, 12)),
    el("td", { title: new Date(pkg.createdAt * 1000).toLocaleString() }, ago(pkg.createdAt)),
    el("td", { class: "value muted" }, (pkg.uris && (pkg.uris.coap || pkg.uris.http)) || ""),
    el("td", {}, el("button", { onclick: remove }, "Delete")),
  );
}

export async function renderFirmware() {
  const status = el("p", { class: "muted", id: "firmware-count" }, "Loading…");
  const note = el("p", { id: "firmware-message", class: "muted" }, "");
  const rows = el("tbody", { id: "firmware-packages" });
  const file = el("input", { id: "firmware-file", type: "file", required: true });
  const name = el("input", { id: "firmware-name", placeholder: "name", size: "20", required: true });
  const version = el("input", { id: "firmware-version", placeholder: "version", size: "12", required: true });
  const message = (text, bad) => {
    note.textContent = text;
    note.className = bad ? "error" : "muted";
  };
  file.addEventListener("change", () => {
    if (!name.value && file.files.length) name.value = file.files[0].name.replace(/\.[^.]*$/, "");
  });

  async function fill() {
    const answer = await api("/firmware");
    if (answer.status !== 200) {
      status.textContent = errorText(answer);
      return;
    }
    status.textContent = `${answer.data.length} packages`;
    rows.replaceChildren(...answer.data.map((pkg) => packageRow(pkg, fill, message)));
  }

  const form = el(
    "form",
    {
      class: "panel",
      id: "firmware-form",
      onsubmit: async (e) => {
        e.preventDefault();
        if (!file.files.length) return;
        message("Uploading…", false);
        const answer = await upload(file.files[0], name.value.trim(), version.value.trim());
        if (answer.status === 201) {
          message(`Stored ${answer.data.name} ${answer.data.version}: ${sizeText(answer.data.size)}, SHA-256 ${answer.data.sha256}`, false);
          form.reset();
          fill();
        } else message(errorText(answer), true);
      },
    },
    el("h2", {}, "Upload a package"),
    el("div", { class: "toolbar" }, file, name, version, el("button", { class: "primary", id: "firmware-upload" }, "Upload")),
  );
  view().replaceChildren(
    el("h1", {}, "Firmware"),
    status,
    note,
    el(
      "div",
      { class: "panel" },
      el("h2", {}, "Packages"),
      el(
        "table",
        {},
        el("thead", {}, el("tr", {}, ["Name", "Version", "Size", "SHA-256", "Created", "Device URI", ""].map((h) => el("th", {}, h)))),
        rows,
      ),
    ),
    form,
  );
  await fill();
  return () => {};
}
