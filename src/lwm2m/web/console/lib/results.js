// The result of an operation: in the bar at the top of the page, and beside the row, instance
// or object it belongs to.

import { el } from "./dom.js";
import { recordText } from "./values.js";

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

export function codeText(code) {
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

// The last result, in a bar that stays in view at the top of the page (when the page has one).
export function showResult(title, answer, ep) {
  const box = document.getElementById("result");
  if (!box) return;
  box.classList.remove("muted");
  box.replaceChildren(...resultNodes(title, answer, ep));
}

// The same result beside what it belongs to: under a resource's row, an instance's or an
// object's header. A newer result of the same place replaces the older one.
export function showInline(target, title, answer, ep) {
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
