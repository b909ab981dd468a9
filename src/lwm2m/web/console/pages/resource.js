// One resource's row on the device page: its value, its chart, and buttons for the operations
// its definition allows (R, W, E).

import { model } from "../lib/api.js";
import { startChart } from "../lib/chart.js";
import { el } from "../lib/dom.js";
import { inputProblem, NUMERIC, typedInput, typedValue } from "../lib/inputs.js";
import { isObserved, observed, unobserved } from "../lib/observations.js";
import { deviceCall, run } from "../lib/operations.js";
import { showInline } from "../lib/results.js";
import { display, storeRecords, valueOf } from "../lib/values.js";
import { attributesForm } from "./forms.js";

export function resourceRow(ep, oid, iid, resource) {
  const path = `/${oid}/${iid}/${resource.id}`;
  const ops = resource.operations || "";
  const actions = el("div", { class: "actions" });
  if (ops.includes("R")) {
    actions.append(
      el("button", { "data-op": "read", onclick: (e) => readResource(ep, path, oid, resource, e.target.closest("tr")) }, "Read"),
    );
    const obs = el(
      "button",
      {
        "data-op": "observe",
        class: isObserved(ep, path) ? "on" : "",
        onclick: () => toggleObserve(ep, path, obs, resource, obs.closest("tr")),
      },
      isObserved(ep, path) ? "Cancel" : "Observe",
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

// A Read; an IPSO sensor's unit (resource 5701 of the same instance) is read first when the
// definition has none, so that the value shows with it.
async function readResource(ep, path, oid, resource, target) {
  const parts = path.split("/");
  const m = await model(oid); // asked already, when the page was drawn
  if (resource && !resource.units && typeof resource === "object" && m) {
    const hasUnits = (m.resources || []).some((r) => r.id === 5701);
    if (hasUnits && !valueOf(ep, `/${parts[1]}/${parts[2]}/5701`)) {
      const { data } = await deviceCall(ep, `/${parts[1]}/${parts[2]}/5701`, {});
      if (data && data.records) storeRecords(ep, data.records, false);
    }
  }
  return run(ep, "Read", path, {}, target);
}

// Observe (RFC 7641) or cancel; an observed number gets a chart.
async function toggleObserve(ep, path, button, resource, target) {
  if (isObserved(ep, path)) {
    await run(ep, "Cancel observation", `${path}/observe`, { method: "DELETE" }, target);
    unobserved(ep, path);
    button.textContent = "Observe";
    button.classList.remove("on");
    return;
  }
  const answer = await run(ep, "Observe", `${path}/observe`, { method: "POST" }, target);
  if (answer.status === 200 && answer.data && String(answer.data.code).startsWith("2.")) {
    observed(ep, path);
    button.textContent = "Cancel";
    button.classList.add("on");
    if (resource && NUMERIC.has(resource.type)) await startChart(ep, path);
  }
}
