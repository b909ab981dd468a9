// A device's labels on its page (GET/PUT /api/clients/EP/labels): shown as key=value chips,
// edited as one line of "key=value" terms. The fleet page filters by them.

import { api, enc } from "../lib/api.js";
import { el } from "../lib/dom.js";

// "site=north hw=rev2" as {site: "north", hw: "rev2"}; a term without "=" is an error.
export function parseLabels(text) {
  const labels = {};
  for (const term of text.split(/[\s,]+/).filter(Boolean)) {
    const cut = term.indexOf("=");
    if (cut <= 0) throw new Error(`"${term}" is not key=value`);
    labels[term.slice(0, cut)] = term.slice(cut + 1);
  }
  return labels;
}

const asText = (labels) => Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(" ");

// The labels line of the device page.
export function labelsLine(ep) {
  const path = `/clients/${enc(ep)}/labels`;
  const chips = el("span", { id: "device-labels" });
  const input = el("input", { id: "labels-input", size: "50", placeholder: "site=north hw=rev2", hidden: true });
  const message = el("span", { class: "error", id: "labels-error" });
  let current = {};

  function show(labels) {
    current = labels;
    const pairs = Object.entries(labels);
    chips.replaceChildren(...(pairs.length ? pairs.map(([k, v]) => el("span", { class: "label-chip" }, `${k}=${v}`)) : [el("span", { class: "muted" }, "no labels")]));
  }

  const edit = el(
    "button",
    {
      id: "labels-edit",
      type: "button",
      onclick: async () => {
        if (input.hidden) {
          input.value = asText(current);
          input.hidden = false;
          edit.textContent = "Save labels";
          input.focus();
          return;
        }
        let labels;
        try {
          labels = parseLabels(input.value);
        } catch (e) {
          message.textContent = e.message;
          return;
        }
        const { status, data } = await api(path, { method: "PUT", body: labels });
        if (status !== 200) {
          message.textContent = (data && data.error) || `HTTP ${status}`;
          return;
        }
        message.textContent = "";
        input.hidden = true;
        edit.textContent = "Edit labels";
        show(data);
      },
    },
    "Edit labels",
  );
  api(path).then(({ status, data }) => {
    if (status === 200) show(data);
  });
  return el("div", { class: "toolbar labels" }, el("strong", {}, "Labels"), chips, input, edit, message);
}
