// The client listing (GET /api/clients) by pages, and its filters done again in the page for
// clients that register while it is open.

import { api } from "./api.js";

// A page of GET /api/clients: {clients, next}. The server walks its index by endpoint name and
// may answer a filtered page short (with a next), so that listing never holds it up.
export async function clientPage(query) {
  const { status, data } = await api("/clients", { query });
  if (status !== 200 || !data || !Array.isArray(data.clients)) return { clients: [], next: null, status, data };
  return data;
}

// The object IDs a client registered (its "</3/0>"-style links).
export function objectIds(client) {
  const ids = new Set();
  for (const o of client.objects || []) ids.add(Number(o.path.split("/")[1]));
  return ids;
}

// A name glob (*, ?, [set], [!set]) as the server matches it, as an anchored RegExp.
export function globRegex(glob) {
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*") out += ".*";
    else if (c === "?") out += ".";
    else if (c === "[") {
      const close = glob.indexOf("]", i + 2);
      if (close < 0) out += "\\[";
      else {
        let set = glob.slice(i + 1, close).replace(/\\/g, "\\\\");
        if (set.startsWith("!")) set = "^" + set.slice(1);
        out += `[${set}]`;
        i = close;
      }
    } else out += c.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${out}$`, "s");
}

// The server's filters as a test of one client: a name prefix or glob, an object, awake or not.
export function filterTest({ endpoint, object, online }) {
  const name = endpoint || "";
  const glob = /[*?[]/.test(name) ? globRegex(name) : null;
  const oid = object === "" || object === undefined ? null : Number(object);
  return (c) =>
    (glob ? glob.test(c.endpoint) : c.endpoint.startsWith(name)) &&
    (oid === null || objectIds(c).has(oid)) &&
    (online === "" || online === undefined || String(!c.sleeping) === online);
}

// The endpoint a cursor stands for (base64url of its UTF-8 form, as the server makes them).
export function cursorName(cursor) {
  const bytes = Uint8Array.from(atob(cursor.replace(/-/g, "+").replace(/_/g, "/")), (ch) => ch.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

// Code-point order, as the server sorts endpoint names (not localeCompare).
export const byName = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
