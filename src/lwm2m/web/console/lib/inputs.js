// The input a Write takes for each resource type (LwM2M-TS-Core 1.2 §C: data types), what
// keeps it from being written, and the value it writes.

import { el } from "./dom.js";

export const NUMERIC = new Set(["Integer", "Unsigned Integer", "Float", "Time"]);

// A boolean has no value chosen in advance, a Time is a local date and time, a number says its units.
export function typedInput(resource) {
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
export function inputProblem(resource, input) {
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

export function typedValue(resource, input) {
  const t = resource.type;
  if (t === "Boolean") return input.value === "true";
  // datetime-local is the user's local time; the device takes Unix seconds.
  if (t === "Time") return Math.round(new Date(input.value).getTime() / 1000);
  if (NUMERIC.has(t)) return Number(input.value);
  return input.value;
}
