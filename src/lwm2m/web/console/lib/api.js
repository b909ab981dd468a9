// The REST API (/api/...): every call carries the bearer token, asked of the user when the
// server answers 401 (RFC 6750 §3) and kept in localStorage for the next visit.

let token = localStorage.getItem("lwm2m-token") || "";

export function authHeaders() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// Shows index.html's token dialog and waits until it is closed.
export async function askToken() {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  input.value = token;
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  token = input.value.trim();
  localStorage.setItem("lwm2m-token", token);
}

// One call: {status, data} with the JSON body (null when there is none). A 401 asks for a
// token and tries again.
export async function api(path, { method = "GET", body, query } = {}) {
  const qs = query ? `?${new URLSearchParams(query)}` : "";
  const headers = authHeaders();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(`/api${path}${qs}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) {
    await askToken();
    return api(path, { method, body, query });
  }
  let data = null;
  try {
    data = await res.json();
  } catch (e) {
    data = null;
  }
  return { status: res.status, data };
}

export const enc = (s) => encodeURIComponent(s);
export const devicePath = (ep, path) => `/clients/${enc(ep)}${path}`;

// Object definitions from the server's catalogue, asked once each: id -> definition, or
// null when the server has no model of the object.
const models = new Map();

export async function model(id) {
  if (!models.has(id)) {
    const { status, data } = await api(`/models/${id}`);
    models.set(id, status === 200 ? data : null);
  }
  return models.get(id);
}
