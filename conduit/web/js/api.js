// The console's one way to the server: `/console/api` with the signed-in account's bearer
// token, a request id per call (sent, and kept on the error), the error envelope turned into
// an ApiError whose message is the server's own words, 401 → one refresh then sign-in, and a
// small stale-while-revalidate cache for reads (`useResource`).
import { useLayoutEffect, useState, useCallback } from "../vendor/htm-preact-3.1.1.module.js";

const ACCESS = "conduit.console.access_token";
const REFRESH = "conduit.console.refresh_token";
export const CONSOLE = "/console/api";

export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}

export function requestId() {
  return crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random();
}

export const tokens = {
  get access() { return localStorage.getItem(ACCESS); },
  get refresh() { return localStorage.getItem(REFRESH); },
  set(pair) {
    localStorage.setItem(ACCESS, pair.access_token);
    localStorage.setItem(REFRESH, pair.refresh_token);
  },
  clear() {
    localStorage.removeItem(ACCESS);
    localStorage.removeItem(REFRESH);
  },
};

// Whoever shows the sign-in page listens for this (app.js).
export const signedOut = new EventTarget();

function url(path, query) {
  const full = path.startsWith("/") && !path.startsWith(CONSOLE) ? CONSOLE + path : path;
  if (!query) return full;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== "") params.set(k, String(v));
  }
  const text = params.toString();
  return text ? `${full}?${text}` : full;
}

// What a failed response says, in words: the envelope's message, else the status line.
export async function errorOf(response, id) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  const message = (body && (body.message || body.detail ||
    (typeof body.error === "string" && body.error))) || // Dify's failed DSL import: {status, error}
    `${response.status} ${response.statusText || "error"}`;
  const error = new ApiError(response.status, body && body.code, String(message),
    response.headers.get("x-request-id") || id);
  error.body = body; // the whole reply, for pages that show more than its message
  return error;
}

let refreshing = null;
async function refreshTokens() {
  const refresh = tokens.refresh;
  if (!refresh) return false;
  refreshing ??= fetch(url("/refresh-token"), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ refresh_token: refresh }),
  }).then(async (r) => {
    if (!r.ok) return false;
    tokens.set((await r.json()).data);
    return true;
  }).catch(() => false).finally(() => { refreshing = null; });
  return refreshing;
}

// fetch() with the console's headers; returns the Response (for streams) or throws ApiError.
export async function send(method, path, { body, query, headers = {}, signal, form } = {}) {
  const id = requestId();
  const attempt = () => {
    const h = { "x-request-id": id, ...headers };
    if (tokens.access) h.authorization = `Bearer ${tokens.access}`;
    let payload;
    if (form) payload = form;
    else if (body !== undefined) {
      h["content-type"] = "application/json";
      payload = JSON.stringify(body);
    }
    return fetch(url(path, query), { method, headers: h, body: payload, signal });
  };
  // A plain read the page's boot script (js/boot.js) already sent for this account: its reply.
  const early = method === "GET" && !signal && Object.keys(headers).length === 0 && globalThis.conduitBoot
    ? globalThis.conduitBoot.take(url(path, query), tokens.access) : null;
  let response = (early && (await early)) || (await attempt());
  if (response.status === 401 && path !== "/login" && (await refreshTokens())) {
    response = await attempt();
  }
  if (response.status === 401 && path !== "/login") {
    tokens.clear();
    cache.clear();
    signedOut.dispatchEvent(new Event("signedout"));
  }
  if (!response.ok) throw await errorOf(response, id);
  return response;
}

export async function call(method, path, options) {
  const response = await send(method, path, options);
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

export const api = {
  get: (path, query, options) => call("GET", path, { query, ...options }),
  post: (path, body, options) => call("POST", path, { body, ...options }),
  put: (path, body, options) => call("PUT", path, { body, ...options }),
  patch: (path, body, options) => call("PATCH", path, { body, ...options }),
  delete: (path, options) => call("DELETE", path, options),
};

// --- stale-while-revalidate reads -----------------------------------------------------------
const cache = new Map(); // url → {data, at}
const listeners = new Map(); // url → Set(callback)

// Another account or workspace: nothing cached may show (the pages then load afresh).
export function forget() {
  cache.clear();
  if (globalThis.conduitBoot) globalThis.conduitBoot.drop();
  for (const set of listeners.values()) for (const cb of set) cb();
}

// After a write: every cached read under `prefix` is fetched again. What was shown stays on
// screen until the new answer arrives (stale-while-revalidate), so nothing blinks to "Loading".
export function invalidate(prefix) {
  for (const key of [...cache.keys()]) {
    if (key.startsWith(url(prefix))) {
      for (const cb of listeners.get(key) || []) cb();
    }
  }
}

// {data, error, loading, reload}: the cached value at once (if any), refreshed in the
// background; `path` null means "nothing to load yet".
// The replies to reads the boot script sent (js/boot.js), parsed, when they have all arrived
// (`path`: one, with its query, or several); else undefined.
export function early(path, query) {
  const boot = globalThis.conduitBoot;
  if (!boot || !path) return undefined;
  return boot.peek(Array.isArray(path) ? path.map((p) => url(p)) : url(path, query), tokens.access);
}

export function useResource(path, query) {
  const key = path ? url(path, query) : null;
  const [first] = useState(() => {
    const data = early(key);
    if (data !== undefined) cache.set(key, { data, at: Date.now() });
    return { key, fresh: data !== undefined };
  });
  const [state, setState] = useState(() => ({
    data: key && cache.has(key) ? cache.get(key).data : undefined,
    error: null,
    loading: Boolean(key) && !first.fresh,
  }));
  const [tick, setTick] = useState(0);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  // A layout effect: the request leaves as the page is committed. Preact runs plain effects
  // after the next animation frame, which a background or headless tab delays up to 100 ms.
  useLayoutEffect(() => {
    if (!key) return undefined;
    let live = true;
    const set = listeners.get(key) || new Set();
    set.add(reload);
    listeners.set(key, set);
    const unlisten = () => { live = false; set.delete(reload); };
    if (first.fresh && first.key === key && tick === 0) {
      first.fresh = false; // the boot script's reply, just arrived: no second request
      return unlisten;
    }
    const cached = cache.get(key);
    setState({ data: cached ? cached.data : undefined, error: null, loading: true });
    api.get(key).then(
      (data) => {
        cache.set(key, { data, at: Date.now() });
        if (live) setState({ data, error: null, loading: false });
      },
      (error) => { if (live) setState((s) => ({ data: s.data, error, loading: false })); },
    );
    return unlisten;
  }, [key, tick]);
  return { ...state, reload };
}
