// DOM helpers shared by every page: elements built from attributes and children, the
// page's main area, and times said the way people read them.

// An HTML element: attributes `onNAME` become listeners, `class` the class name, `true` an empty
// attribute; undefined, null and false leave an attribute or a child out.
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// An SVG element (charts, the map): SVG lives in its own namespace.
export function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The area each page fills (index.html's <main id="view">).
export const view = () => document.getElementById("view");

// Unix seconds as "12 s ago", "3 min ago", … or, past a day, a local date.
export function ago(seconds) {
  if (!seconds) return "–";
  const d = Math.max(0, Date.now() / 1000 - seconds);
  if (d < 60) return `${Math.round(d)} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  if (d < 86400) return `${Math.round(d / 3600)} h ago`;
  return new Date(seconds * 1000).toLocaleString();
}
