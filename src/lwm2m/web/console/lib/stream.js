// The live event stream (GET /api/events, server-sent events). Read through fetch rather than
// EventSource, because EventSource cannot send the bearer token.

import { askToken, authHeaders } from "./api.js";
import { sleep } from "./dom.js";

const BACKLOG = 200; // events the server kept, asked for on opening the stream
const KEPT = 2000; // events this page keeps

let seen = []; // the events of the current connection, newest last
let link = "connecting"; // "connecting", "live" or "reconnecting"
const listeners = new Set();
const linkListeners = new Set();

// The events seen since the stream (re)connected, newest last: {name, data, at, earlier}.
export const events = () => seen;
export const linkState = () => link;

// Calls `listener(event)` for each event until the returned function is called. Listeners run
// in the order they subscribed, so the shared state (values, queued requests) subscribed at
// load is up to date before any page's listener runs.
export function subscribe(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

// Calls `listener(link)` when the stream connects or is lost, until the returned function is called.
export function onLink(listener) {
  linkListeners.add(listener);
  return () => linkListeners.delete(listener);
}

function setLink(state) {
  link = state;
  const live = document.getElementById("live");
  live.textContent = link === "live" ? "live" : link === "reconnecting" ? "reconnecting…" : "connecting…";
  live.classList.toggle("on", link === "live");
  for (const listener of linkListeners) listener(link);
}

// One event of the stream: its "event:" and "data:" lines (the WHATWG server-sent events format).
function dispatchChunk(chunk) {
  let name = "message";
  let data = "";
  for (const line of chunk.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (!data) return;
  let payload;
  try {
    payload = JSON.parse(data);
  } catch (e) {
    return;
  }
  // An event of the backlog carries the time the server had it (receivedAt, Unix seconds).
  const earlier = typeof payload.receivedAt === "number";
  const event = { name, data: payload, at: earlier ? payload.receivedAt * 1000 : Date.now(), earlier };
  seen.push(event);
  if (seen.length > KEPT) seen.splice(0, seen.length - KEPT);
  for (const listener of listeners) listener(event);
}

// Reads the stream for as long as the page is open, reconnecting when the server goes away.
export async function streamEvents() {
  for (;;) {
    try {
      // The stream opens with the last events the server kept (a backlog), then goes on live;
      // after a reconnection the backlog replaces what this page had, so nothing shows twice.
      const res = await fetch(`/api/events?backlog=${BACKLOG}`, { headers: authHeaders() });
      if (res.status === 401) {
        await askToken();
        continue;
      }
      if (!res.ok || !res.body) throw new Error(`events: HTTP ${res.status}`);
      seen = [];
      setLink("live");
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          dispatchChunk(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
        }
      }
    } catch (e) {
      // the server went away: try again shortly
    }
    setLink("reconnecting");
    await sleep(2000);
  }
}
