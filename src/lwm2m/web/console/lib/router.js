// Hash routing: "#/" the fleet, "#/device/EP", "#/map", "#/events", "#/bootstrap", "#/security", "#/firmware",
// "#/campaigns", "#/campaign/ID". A page is
// a function that fills the view and returns (or resolves to) the function that leaves it:
// listeners, timers and observers a page set up end when another page opens.

import { el, view } from "./dom.js";

// The navigation entry a page belongs to, when not its own name.
const NAV = { campaign: "campaigns" };
const NAMED = { "#/map": "map", "#/events": "events", "#/bootstrap": "bootstrap", "#/security": "security", "#/firmware": "firmware", "#/campaigns": "campaigns" };

// The page a location hash names and its argument (a device page's endpoint, still encoded).
export function pageOf(hash) {
  if (hash.startsWith("#/device/")) return { name: "device", arg: hash.slice("#/device/".length) };
  if (hash.startsWith("#/campaign/")) return { name: "campaign", arg: hash.slice("#/campaign/".length) };
  return { name: NAMED[hash] || "fleet", arg: undefined };
}

// Opens the page of the location's hash now and on each change; `pages` maps a name to its page.
export function startRouter(pages) {
  let leave = () => {};
  async function route() {
    leave();
    leave = () => {};
    const { name, arg } = pageOf(location.hash || "#/");
    for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === (NAV[name] || name));
    try {
      leave = await pages[name](arg);
    } catch (e) {
      view().replaceChildren(el("h1", {}, "Error"), el("p", { class: "error" }, String(e)));
    }
  }
  window.addEventListener("hashchange", route);
  route();
}
