// The fleet page: the registered clients by pages of the server's listing, filtered on the
// server, loaded further by "More" or by scrolling, and kept live by the event stream.

import { enc, model } from "../lib/api.js";
import { byName, clientPage, cursorName, filterTest, objectIds } from "../lib/clients.js";
import { ago, el, view } from "../lib/dom.js";
import { subscribe } from "../lib/stream.js";

const PAGE = 100; // clients asked for per page
// ms of quiet typing before the filter goes to the server: short, as the answer must show
// within 200 ms of the last key (bench/console_filter.py measures it over 10,000 devices);
// meanwhile the rows already loaded are narrowed at once.
const FILTER_DELAY = 100;

function row(c) {
  const st = c.sleeping ? "sleeping" : "online";
  return el(
    "tr",
    { class: "client", "data-endpoint": c.endpoint, onclick: () => (location.hash = `#/device/${enc(c.endpoint)}`) },
    el("td", {}, el("a", { href: `#/device/${enc(c.endpoint)}` }, c.endpoint)),
    el("td", {}, c.lwm2mVersion),
    el("td", {}, c.binding + (c.queueMode ? " (queue)" : "")),
    el("td", {}, c.address),
    el("td", { "data-seen": c.lastUpdate }, ago(c.lastUpdate)),
    el("td", {}, el("span", { class: `state ${st}` }, st)),
    el("td", { class: "muted" }, String(objectIds(c).size)),
  );
}

export async function renderFleet() {
  const nameFilter = el("input", {
    id: "filter-name",
    placeholder: "name prefix or glob*",
    title: "endpoint name prefix, or a glob with *, ? or [...]",
    type: "search",
  });
  const objectFilter = el("select", { id: "filter-object" }, el("option", { value: "" }, "all objects"));
  // Labels (PUT /api/clients/EP/labels): "key=value" terms, all of which must hold.
  const labelFilter = el("input", {
    id: "filter-label",
    placeholder: "labels: site=north hw=rev2",
    title: "key=value labels separated by spaces or commas: every one must hold",
    type: "search",
  });
  const stateFilter = el(
    "select",
    { id: "filter-state" },
    el("option", { value: "" }, "any state"),
    el("option", { value: "true" }, "online"),
    el("option", { value: "false" }, "sleeping"),
  );
  const count = el("span", { class: "muted", id: "fleet-count" });
  const body = el("tbody", { id: "fleet" });
  const more = el("button", { id: "fleet-more", type: "button", hidden: true }, "More");
  const sentinel = el("div", { id: "fleet-end" });
  view().replaceChildren(
    el("h1", {}, "Fleet"),
    el("div", { class: "toolbar" }, nameFilter, labelFilter, objectFilter, stateFilter, count),
    el(
      "div",
      { class: "panel" },
      el(
        "table",
        {},
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            ["Endpoint", "LwM2M", "Binding", "Address", "Last seen", "State", "Objects"].map((h) => el("th", {}, h)),
          ),
        ),
        body,
      ),
      more,
      sentinel,
    ),
  );

  // The listing shown: the pages loaded so far for the current filter, in endpoint order.
  let shown = new Map(); // endpoint -> registration view
  let next = null; // cursor of the next page, null when everything matching is shown
  let generation = 0; // bumped by each new filter: answers for an older one are dropped
  let loading = false;
  let closed = false;
  const filters = () => ({ endpoint: nameFilter.value.trim(), object: objectFilter.value, online: stateFilter.value });
  const labelTerms = () => labelFilter.value.split(/[\s,]+/).filter(Boolean);
  let matches = filterTest(filters());

  let asking = false; // a new filter is on its way to the server
  function rows() {
    const clients = [...shown.values()].filter(matches).sort((a, b) => byName(a.endpoint, b.endpoint));
    body.replaceChildren(...clients.map(row));
    if (asking) count.textContent = `${clients.length} loaded clients match, asking the server…`;
    else count.textContent = `${clients.length} clients${next ? " shown, more to load" : ""}`;
    more.hidden = !next || asking;
  }

  async function loadMore(fresh) {
    if (loading && !fresh) return;
    const mine = fresh ? ++generation : generation;
    if (!fresh && !next) return;
    loading = true;
    try {
      const f = filters();
      const query = { limit: String(PAGE) };
      if (f.endpoint) query.endpoint = f.endpoint;
      if (f.object) query.object = f.object;
      if (f.online) query.online = f.online;
      // A sparse filter can answer short pages: go on until a page's worth is shown or the end.
      let wanted = PAGE;
      let cursor = fresh ? null : next;
      for (let round = 0; round < 20 && wanted > 0; round++) {
        if (cursor) query.cursor = cursor;
        // Repeated label=key=value parameters: the pairs form of the query.
        const page = await clientPage([...Object.entries(query), ...labelTerms().map((t) => ["label", t])]);
        if (mine !== generation || closed) return;
        if (fresh && round === 0) {
          shown = new Map();
          asking = false;
        }
        for (const c of page.clients) shown.set(c.endpoint, c);
        wanted -= page.clients.length;
        next = page.next;
        cursor = page.next;
        if (!cursor) break;
      }
      rows();
      fillObjects();
    } finally {
      if (mine === generation) loading = false;
    }
    // Still at the end of the table (a short page, or a scroll during the load): go on.
    if (mine === generation && endInView && next && !closed) setTimeout(() => loadMore(false), 0);
  }

  // The object filter offers the objects of the clients loaded so far, by name.
  const known = new Set();
  async function fillObjects() {
    const ids = new Set();
    for (const c of shown.values()) for (const id of objectIds(c)) ids.add(id);
    for (const id of [...ids].sort((a, b) => a - b)) {
      if (known.has(id) || id === 0) continue;
      known.add(id);
      const m = await model(id);
      const option = el("option", { value: String(id) }, `${id} ${m ? m.name : ""}`);
      const after = [...objectFilter.options].find((o) => o.value && Number(o.value) > id);
      objectFilter.insertBefore(option, after || null);
    }
  }

  let timer = null;
  function refilter() {
    clearTimeout(timer);
    matches = filterTest(filters());
    asking = true;
    rows(); // the loaded rows that match, at once
    timer = setTimeout(() => loadMore(true), FILTER_DELAY);
  }
  nameFilter.addEventListener("input", refilter);
  labelFilter.addEventListener("input", refilter);
  objectFilter.addEventListener("change", refilter);
  stateFilter.addEventListener("change", refilter);
  more.addEventListener("click", () => loadMore(false));
  // Infinite scroll: the next page loads when the end of the table comes into view.
  let endInView = false;
  const watcher = new IntersectionObserver((entries) => {
    endInView = entries[entries.length - 1].isIntersecting;
    if (endInView && next) loadMore(false);
  });

  // Events come in bursts: redraw the table at most once a frame.
  let scheduled = false;
  const refresh = () => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      rows();
      fillObjects();
    });
  };
  // Live changes: a client already shown follows its events; a new one that matches joins the
  // table when it falls within what is loaded (before the next cursor's position, or anywhere
  // once the last page is in).
  const within = (ep) => next === null || byName(ep, cursorName(next)) <= 0;
  const unsubscribe = subscribe((e) => {
    const ep = e.data.endpoint;
    if ((e.name === "REGISTRATION" || e.name === "UPDATE") && e.data.registration) {
      const c = e.data.registration; // awake: a Register or an Update wakes a queue-mode client
      // The page cannot see a newcomer's labels: with a label filter, only the clients shown follow.
      if (matches(c) && (shown.has(ep) || (within(ep) && !labelTerms().length))) shown.set(ep, c);
      else shown.delete(ep);
      refresh();
    } else if (e.name === "DEREGISTRATION" || e.name === "EXPIRED") {
      if (shown.delete(ep)) refresh();
    } else if ((e.name === "SLEEPING" || e.name === "AWAKE") && shown.has(ep)) {
      const c = shown.get(ep);
      c.sleeping = e.name === "SLEEPING";
      if (!matches(c)) shown.delete(ep);
      refresh();
    }
  });
  await loadMore(true);
  watcher.observe(sentinel); // after the first page, so that it is not loaded twice over
  const ticker = setInterval(() => {
    for (const td of body.querySelectorAll("[data-seen]")) td.textContent = ago(Number(td.dataset.seen));
  }, 1000);
  return () => {
    closed = true;
    clearTimeout(timer);
    watcher.disconnect();
    unsubscribe();
    clearInterval(ticker);
  };
}
