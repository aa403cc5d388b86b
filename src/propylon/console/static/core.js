// Propylon web console, shared pieces: the signed-in state, API calls, DOM helpers and
// number formats. Plain ES modules, no build step.

export const state = { key: sessionStorage.getItem("propylon.key") || "", collection: null, history: [], sockets: [] };
export const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- API ---

export async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.key}`, ...(options.headers || {}) };
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, { ...options, headers });
  const text = await response.text();
  const body = text ? JSON.parse(text) : {};
  if (!response.ok) {
    const message = body.error ? body.error.message : `HTTP ${response.status}`;
    throw Object.assign(new Error(message), { status: response.status, body });
  }
  return body;
}

// A browser cannot set Authorization on a WebSocket, and a key in the URL would reach access
// logs: the socket offers a single-use ticket (valid 30 s) as its subprotocol instead.
export async function socket(path, onMessage) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ticket = await api("/v1/ws-tickets", { method: "POST" });
  const ws = new WebSocket(`${scheme}://${location.host}${path}`, ["propylon", ticket.subprotocol]);
  ws.onmessage = (event) => onMessage(JSON.parse(event.data));
  state.sockets.push(ws);
  return ws;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

export const pct = (x) => (x === null || x === undefined ? "–" : `${(x * 100).toFixed(1)} %`);
export const ms = (x) => (x === null || x === undefined ? "–" : `${x.toFixed(1)} ms`);
export const usd = (x) => (x === null || x === undefined ? "–" : `$${Number(x).toFixed(x && Math.abs(x) < 0.01 ? 6 : 4)}`);
