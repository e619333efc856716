// The end-user web app's one way to the server: the web tier (`/api`, Dify's WebApp API) with
// the site's passport. A passport (`GET /api/passport`, `X-App-Code`) names this browser's end
// user; it is kept in localStorage per site code, so a returning visitor keeps their identity
// (and sends it back when asking for a new one). Errors are ApiError with the envelope's
// message and the request id, as in the console's js/api.js. A site open to its workspace's
// members only takes the passport of a member signed in (`POST /api/login`): the web login
// token is kept in localStorage for every site of this server, and sent for a passport.
import { ApiError, errorOf, requestId } from "../api.js";

export { ApiError };

const WEB = "/api";
const boot = () => globalThis.conduitBoot;
const storeKey = (code) => `conduit.webapp.passport.${code}`;
export const LOGIN_KEY = "conduit.webapp.login";
// The errors of a site that takes members only: no one signed in, or not a member.
export const SIGN_IN_CODES = ["web_sso_auth_required", "web_app_access_denied"];

function url(path, query) {
  const given = Object.entries(query || {}).filter(([, v]) => v !== undefined && v !== null && v !== "");
  const text = new URLSearchParams(given.map(([k, v]) => [k, String(v)])).toString();
  return text ? `${WEB}${path}?${text}` : WEB + path;
}

// A client for the site `code`: `send` gives the raw Response (streams, uploads), the verbs
// the parsed body; both throw ApiError on a failed call.
export function webClient(code) {
  let asking = null;

  // The passport the page's boot script (js/boot.js) asked for, if it did: taken once.
  let early = globalThis.conduitBoot ? globalThis.conduitBoot.passport : null;

  async function passport(renew) {
    if (early && !renew) {
      asking ??= early.finally(() => { asking = null; });
      early = null;
    }
    if (asking && !renew) {
      const token = await asking;
      if (token) return token;
    }
    const kept = localStorage.getItem(storeKey(code));
    if (kept && !renew) return kept;
    asking ??= (async () => {
      const id = requestId();
      // A returning browser sends its old passport (the server keeps its end user); a site
      // that takes members only, a member's sign-in (a public site ignores one).
      const login = localStorage.getItem(LOGIN_KEY);
      const ask = (bearer) => fetch(url("/passport"), {
        headers: { "x-app-code": code, "x-request-id": id, ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
      });
      let response = await ask(kept || login);
      if (response.status === 401 && kept && login) response = await ask(login);
      if (!response.ok) {
        // A passport the site no longer takes is dropped; a new visit starts afresh.
        if (response.status === 401) localStorage.removeItem(storeKey(code));
        const error = await errorOf(response, id);
        if (error.code === "web_app_access_denied") localStorage.removeItem(LOGIN_KEY); // not a member
        throw error;
      }
      const token = (await response.json()).access_token;
      localStorage.setItem(storeKey(code), token);
      return token;
    })().finally(() => { asking = null; });
    return asking;
  }

  async function send(method, path, { body, query, headers = {}, signal, form } = {}) {
    const id = requestId();
    const json = !form && body !== undefined;
    const attempt = (token) => fetch(url(path, query), {
      method,
      signal,
      headers: { "x-request-id": id, "x-app-code": code, authorization: `Bearer ${token}`, ...(json ? { "content-type": "application/json" } : {}), ...headers },
      body: form || (json ? JSON.stringify(body) : undefined),
    });
    // A plain read the boot script already sent for this site: its reply.
    const boot = globalThis.conduitBoot;
    const early = method === "GET" && !signal && !form && Object.keys(headers).length === 0 && boot
      ? boot.take(url(path, query), code) : null;
    let response = (early && (await early)) || (await attempt(await passport(false)));
    if (response.status === 401) response = await attempt(await passport(true));
    if (!response.ok) throw await errorOf(response, id);
    return response;
  }

  // The parsed body: JSON, text, or null for 204.
  const call = (method, path, options) => send(method, path, options).then((r) =>
    (r.status === 204 ? null : (r.headers.get("content-type") || "").includes("json") ? r.json() : r.text()));

  return {
    code,
    // The parsed replies of the boot script's reads of `paths` (js/boot.js) when they have all
    // arrived; else undefined.
    early: (paths) => (boot() ? boot().peek(paths.map((p) => url(p)), code) : undefined),
    passport: () => passport(false),
    // A member's sign-in (for a site open to its workspace's members): kept for every site;
    // this site's passport is asked for again with it.
    async signIn(email, password) {
      const id = requestId();
      const response = await fetch(url("/login"), {
        method: "POST",
        headers: { "content-type": "application/json", "x-request-id": id },
        body: JSON.stringify({ email, password }),
      });
      if (!response.ok) throw await errorOf(response, id);
      localStorage.setItem(LOGIN_KEY, (await response.json()).data.access_token);
      localStorage.removeItem(storeKey(code));
      early = null;
      return passport(true);
    },
    signOut() {
      localStorage.removeItem(LOGIN_KEY);
      localStorage.removeItem(storeKey(code));
    },
    send,
    get: (path, query, options) => call("GET", path, { query, ...options }),
    post: (path, body, options) => call("POST", path, { body, ...options }),
    patch: (path, body, options) => call("PATCH", path, { body, ...options }),
    delete: (path, options) => call("DELETE", path, options),
    upload(file) {
      const form = new FormData();
      form.append("file", file);
      return call("POST", "/files/upload", { form });
    },
  };
}
