// The device page's forms: Write-Attributes (LwM2M-TS-Core 1.2 §5.1.2) and Create.

import { el } from "../lib/dom.js";
import { NUMERIC } from "../lib/inputs.js";
import { run } from "../lib/operations.js";
import { showInline } from "../lib/results.js";

// The attributes of `path`; the numeric ones (gt, lt, st, edge) only for a number. Its
// result shows beside `target`.
export function attributesForm(ep, path, numeric, target) {
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

// A new instance of object `oid` (model `m`, or null), its records as JSON to edit: the first
// free instance ID and a few writable resources to start from.
export function createForm(ep, oid, m, instances) {
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
