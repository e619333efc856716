// The first thing either page runs, inline in its HTML (conduit/api/ui.py puts this file in
// place of its <script src>): the console's route table, and the page's first reads sent at
// once, while the browser is still fetching the page's script (its modules in one bundle,
// conduit/api/bundle.py), so that on a first visit the data and the code arrive together
// instead of one after the other. The modules take each read over
// when the page asks for the same URL (js/api.js and js/webapp/api.js: `conduitBoot.take`); a
// read nobody takes within a few seconds is dropped, and a page never waits for one.
"use strict";
(() => {
  const DAY = 86_400_000;
  const day = (t) => new Date(t).toISOString().slice(0, 10);
  const app = (p) => `/apps/${p.appId}`;
  const logs = (p) => {
    // The logs page opens on the last seven days (js/pages/logs.js), and a chat app's
    // conversations (the usual kind: a completion app's list is read once its mode is known).
    const now = Date.now();
    const range = `start=${day(now - 6 * DAY)}&end=${day(now)}`;
    return ["daily-messages", "token-costs", "average-response-time"]
      .map((s) => `${app(p)}/statistics/${s}?${range}`)
      .concat(`${app(p)}/chat-conversations?page=1&limit=20&${range}`);
  };

  // [pattern, the page's module (from js/), title, its first reads (console paths with their
  // query as the page builds it)]. `:name` captures one path segment; the first match wins.
  const routes = [
    ["/signin", "./pages/signin.js", "Sign in", () => []],
    ["/apps", "./pages/apps.js", "Apps", () => ["/apps?mode=all&page=1&limit=20"]],
    ["/apps/:appId", "./pages/app_settings.js", "App",
      (p) => [app(p), `${app(p)}/model-config`, "/workspaces/current/model-providers",
        "/datasets?page=1&limit=100", "/workspaces/current/models/model-types/rerank"]],
    ["/apps/:appId/keys", "./pages/app_keys.js", "API keys", (p) => [app(p), `${app(p)}/api-keys`]],
    ["/apps/:appId/site", "./pages/app_site.js", "Site", (p) => [app(p), `${app(p)}/site`]],
    ["/apps/:appId/debug", "./pages/debugger.js", "Debug", (p) => [app(p)]],
    ["/apps/:appId/logs", "./pages/logs.js", "Logs", (p) => [app(p), ...logs(p)]],
    ["/apps/:appId/annotations", "./pages/annotations.js", "Annotations",
      (p) => [app(p), `${app(p)}/annotation-setting`, `${app(p)}/annotations?page=1&limit=20`,
        "/workspaces/current/models/model-types/text-embedding"]],
    ["/apps/:appId/workflow", "./pages/workflow.js", "Workflow",
      (p) => [app(p), `${app(p)}/workflows/draft`, `${app(p)}/workflow-runs?limit=20`]],
    ["/apps/:appId/tasks", "./pages/tasks.js", "Tasks",
      (p) => [app(p), `${app(p)}/tasks?page=1&limit=20`, `${app(p)}/webhook-deliveries?page=1&limit=20`]],
    ["/datasets", "./pages/datasets.js", "Knowledge", () => ["/datasets?page=1&limit=20"]],
    ["/datasets/:datasetId", "./pages/dataset.js", "Dataset",
      (p) => [`/datasets/${p.datasetId}`, `/datasets/${p.datasetId}/documents?page=1&limit=50`]],
    ["/providers", "./pages/providers.js", "Model providers", () => ["/workspaces/current/model-providers"]],
    ["/tools", "./pages/tools.js", "Tools", () => ["/workspaces/current/tool-providers"]],
    ["/members", "./pages/members.js", "Members", () => ["/workspaces/current/members"]],
  ];

  function parseHash(hash = location.hash) {
    const raw = hash.replace(/^#/, "") || "/apps";
    const [path, search = ""] = raw.split("?");
    return { path: path || "/apps", query: Object.fromEntries(new URLSearchParams(search)) };
  }

  function match(path) {
    const parts = path.split("/").filter(Boolean);
    for (const [pattern, module, title, reads] of routes) {
      const want = pattern.split("/").filter(Boolean);
      if (want.length !== parts.length) continue;
      const params = {};
      let ok = true;
      want.forEach((segment, i) => {
        if (segment.startsWith(":")) params[segment.slice(1)] = decodeURIComponent(parts[i]);
        else if (segment !== parts[i]) ok = false;
      });
      if (ok) return { module, title, params, reads: reads(params) };
    }
    return null;
  }

  // url → {owner, at, replied: Promise<reply | null>, reply: reply | null}, a reply being
  // {status, statusText, headers, text}; `owner` is whose read it is (the console's access
  // token, a site's code): a read is only handed to the same owner, and only while fresh.
  const sent = new Map();
  const KEEP_MS = 10_000;
  const id = () => (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random());

  // A read's reply is kept whole (status, headers, body text), so that a page rendering after
  // it arrived can show its data in that very render (`peek`), with no "Loading…" in between.
  // `headers`: an object (the console's: the request leaves now, not a task later), or the
  // promise of one (a site's passport), or null.
  function send(url, owner, headers) {
    const read = { owner, at: performance.now(), reply: null };
    const request = (h) => (h ? fetch(url, { headers: { "x-request-id": id(), ...h } }) : null);
    const sending = headers instanceof Promise ? headers.then(request) : Promise.resolve(request(headers));
    read.replied = sending
      .then(async (r) => r && { status: r.status, statusText: r.statusText, headers: r.headers, text: await r.text() })
      .then((reply) => { read.reply = reply; return reply; }, () => null); // failed: the page asks again
    sent.set(url, read);
  }

  const fresh = (read, owner) => read.owner === owner && performance.now() - read.at <= KEEP_MS;

  function claim(url, owner) {
    const read = sent.get(url);
    if (!read || !fresh(read, owner)) return null;
    sent.delete(url);
    return read;
  }

  const rebuilt = (reply) => reply && new Response(reply.text, reply);

  // The read of `url` sent at boot for `owner`, once; null when there is none (or it is
  // stale). Its promise gives a Response, or null: then the caller sends its own request.
  function take(url, owner) {
    const read = claim(url, owner);
    return read && read.replied.then(rebuilt);
  }

  // The parsed JSON of reads that have all arrived with a 2xx, taken; else undefined (and
  // every one of them stays for `take`). `urls`: one URL, or several wanted together.
  function peek(urls, owner) {
    const all = Array.isArray(urls) ? urls : [urls];
    const replies = all.map((url) => {
      const read = sent.get(url);
      return read && fresh(read, owner) && read.reply;
    });
    if (!replies.every((r) => r && r.status >= 200 && r.status <= 299)) return undefined;
    let data;
    try {
      data = replies.map((r) => JSON.parse(r.text));
    } catch {
      return undefined;
    }
    for (const url of all) claim(url, owner);
    return Array.isArray(urls) ? data : data[0];
  }

  // Resolves when every read sent so far has its reply (or failed), or after `ms`: a page may
  // wait for its data before its first render rather than render "Loading…" and then again.
  const arrived = (ms) => Promise.race([
    Promise.all([...sent.values()].map((read) => read.replied)),
    new Promise((resolve) => setTimeout(resolve, ms)),
  ]);

  const drop = () => sent.clear();
  const pending = () => [...sent.keys()];

  const [, kind, code] = location.pathname.split("/");

  if (location.pathname === "/") {
    const token = localStorage.getItem("conduit.console.access_token");
    const route = match(token ? parseHash().path : "/signin");
    if (token && route) {
      const headers = { authorization: `Bearer ${token}` };
      for (const path of ["/account/profile", "/workspaces", ...route.reads]) {
        send(`/console/api${path}`, token, headers);
      }
    }
  } else if (["chat", "completion", "workflow"].includes(kind) && code) {
    // The end-user app of a site: its passport (a returning browser's own, else a new one,
    // kept as js/webapp/api.js keeps it), then the reads every page of the kind starts with.
    const site = decodeURIComponent(code);
    const store = `conduit.webapp.passport.${site}`;
    const kept = localStorage.getItem(store);
    const login = localStorage.getItem("conduit.webapp.login"); // a member signed in
    const passport = kept ? Promise.resolve(kept) : fetch("/api/passport", {
      headers: { "x-app-code": site, "x-request-id": id(), ...(login ? { authorization: `Bearer ${login}` } : {}) },
    }).then(async (r) => {
      if (!r.ok) return null; // the page asks again, and says why in words
      const token = (await r.json()).access_token;
      localStorage.setItem(store, token);
      return token;
    }).catch(() => null);
    const headers = passport.then((token) => token && { authorization: `Bearer ${token}`, "x-app-code": site });
    const reads = { chat: ["/conversations?pinned=true&limit=100", "/conversations?pinned=false&limit=100"], completion: ["/saved-messages?limit=100"], workflow: [] };
    for (const path of ["/site", "/parameters", ...reads[kind]]) send(`/api${path}`, site, headers);
    globalThis.conduitBoot = { take, peek, arrived, drop, pending, passport: kept ? null : passport };
    return;
  }
  globalThis.conduitBoot = { routes, parseHash, match, take, peek, arrived, drop, pending, passport: null };
})();
