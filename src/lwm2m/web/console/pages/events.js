// The events page: the stream's events, newest first, filtered by type and endpoint; it says in
// words what it waits for (connecting, reconnecting, paused, nothing matching yet).

import { enc } from "../lib/api.js";
import { el, view } from "../lib/dom.js";
import { events, linkState, onLink, subscribe } from "../lib/stream.js";

const SHOWN = 500; // events in the list, at most
const TYPES = [
  "REGISTRATION", "UPDATE", "DEREGISTRATION", "EXPIRED", "SLEEPING", "AWAKE", "NOTIFICATION", "SEND",
  "OBSERVATION_ENDED", "REQUEST_DONE", "BOOTSTRAP_STARTED", "BOOTSTRAP_FINISHED", "BOOTSTRAP_FAILED",
];

// One event as a line; those of the server's backlog are marked as earlier than the page.
const line = (e) =>
  el(
    "li",
    { "data-event": e.name, class: e.earlier ? "backlog" : "" },
    el("span", { class: "muted" }, new Date(e.at).toLocaleTimeString(), " "),
    el("span", { class: "name" }, e.name),
    " ",
    el("a", { href: `#/device/${enc(e.data.endpoint || "")}` }, e.data.endpoint || ""),
    " ",
    e.data.records ? e.data.records.map((r) => `${r.path}=${JSON.stringify(r.value)}`).join(" ") : e.data.reason || "",
  );

export function renderEvents() {
  const type = el("select", { id: "event-type" }, el("option", { value: "" }, "all events"));
  for (const n of TYPES) type.append(el("option", { value: n }, n));
  const who = el("input", { type: "search", placeholder: "endpoint", id: "event-endpoint" });
  const pause = el("button", {}, "Pause");
  const status = el("span", { class: "muted", id: "event-status" });
  const list = el("ul", { class: "events", id: "event-log" });
  let paused = false;
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused) fill();
    else say();
  });
  const matches = (e) => (!type.value || e.name === type.value) && (!who.value || (e.data.endpoint || "").includes(who.value));
  // What the page is waiting for, always in words: the stream's state and what it has shown.
  function say() {
    const shown = list.querySelectorAll("li[data-event]").length;
    const seen = events();
    const earlier = seen.filter((e) => e.earlier).length;
    const link = linkState();
    let text;
    if (link === "connecting") text = "waiting for events… (connecting to the server)";
    else if (link === "reconnecting") text = "reconnecting… (the event stream was lost; events resume once it is back)";
    else if (paused) text = "paused: new events are not shown until Resume";
    else if (!seen.length) text = "connected, no events yet: waiting for events…";
    else if (!shown) text = "connected: no event matches the filter yet, waiting for events…";
    else text = `live · ${shown} shown${earlier ? ` (the server's last ${earlier} before this page opened, then live)` : ""}`;
    status.textContent = text;
    status.dataset.link = link;
    list.classList.toggle("empty", !shown);
    if (!shown) list.replaceChildren(el("li", { class: "waiting" }, text));
  }
  function fill() {
    list.replaceChildren(...events().filter(matches).slice(-SHOWN).reverse().map(line));
    say();
  }
  type.addEventListener("change", fill);
  who.addEventListener("input", fill);
  view().replaceChildren(
    el("h1", {}, "Events"),
    el("div", { class: "toolbar" }, type, who, pause, status),
    el("div", { class: "panel" }, list),
  );
  fill();
  const unsubscribe = subscribe((e) => {
    if (!paused && matches(e)) {
      const waiting = list.querySelector("li.waiting");
      if (waiting) waiting.remove();
      list.prepend(line(e));
      while (list.children.length > SHOWN) list.lastChild.remove();
    }
    say();
  });
  // A new connection starts again from the server's backlog: show the page afresh.
  const stopLink = onLink(() => fill());
  return () => {
    unsubscribe();
    stopLink();
  };
}
