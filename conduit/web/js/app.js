// The console's shell: who is signed in, the navigation, and the page the hash names (loaded
// on first visit). Signed out (no token, or a 401 the refresh token could not mend) → the
// sign-in page, which comes back to where the user was.
import { html, render, useEffect, useLayoutEffect, useState, useCallback } from "../vendor/htm-preact-3.1.1.module.js";
import { api, early, tokens, signedOut, forget } from "./api.js";
import { match, navigate, parseHash, useLocation, href } from "./router.js";
import { SessionContext } from "./session.js";
import { ErrorBox, Loading } from "./ui.js";

const FIRST_DATA_MS = 400; // past this, the first render shows what has come, the rest loads
const loaded = new Map(); // module path → module
const loading = new Map(); // module path → the promise of its import

function load(module) {
  if (!loading.has(module)) {
    loading.set(module, import(module).then((m) => { loaded.set(module, m); return m; }));
  }
  return loading.get(module);
}

// The page the address names is loaded now (from the page's bundle, conduit/api/bundle.py), and
// js/boot.js sent its reads: the first render waits for both (a moment at most), so that it
// is the page with its data, not "Loading…" and then each part again.
const first = match(tokens.access ? parseHash().path : "/signin");
if (first) {
  await Promise.all([
    load(first.module).catch(() => { /* reported when the page is shown */ }),
    globalThis.conduitBoot.arrived(FIRST_DATA_MS),
  ]);
}

// The module of the page `module` names: at once when it is loaded already, else once its
// import ends. Never another page's module (a render between two routes would give the new
// route's props to the old page).
function usePage(module) {
  const [state, setState] = useState({ module: null, page: null, error: null });
  useLayoutEffect(() => { // at commit, not a frame later (see api.js)
    if (!module || loaded.has(module)) return undefined;
    let live = true;
    load(module).then(
      (m) => { if (live) setState({ module, page: m, error: null }); },
      (error) => {
        loading.delete(module); // a later visit tries again
        if (live) {
          setState({ module, page: null, error: new Error(`This page could not be loaded: ${error.message}`) });
        }
      },
    );
    return () => { live = false; };
  }, [module]);
  if (module && loaded.has(module)) return { page: loaded.get(module), error: null };
  return state.module === module ? state : { page: null, error: null };
}

const accountOf = (profile, workspaces) => ({
  profile: profile.data,
  workspaces: workspaces.data,
  workspace: workspaces.data.find((w) => w.current) || workspaces.data[0] || null,
  error: null,
});

function useAccount(signedIn) {
  const [state, setState] = useState(() => {
    // Already here when the boot script's replies arrived before the modules.
    const both = signedIn ? early(["/account/profile", "/workspaces"]) : undefined;
    if (both) return accountOf(...both);
    return { profile: null, workspaces: [], workspace: null, error: null };
  });
  const [boot] = useState(() => ({ fresh: Boolean(state.profile) }));
  const [tick, setTick] = useState(0);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  useLayoutEffect(() => { // at commit, not a frame later (see api.js)
    if (!signedIn) return;
    if (boot.fresh) { boot.fresh = false; return; } // the boot script's replies, just arrived
    Promise.all([api.get("/account/profile"), api.get("/workspaces")]).then(
      ([profile, workspaces]) => setState(accountOf(profile, workspaces)),
      (error) => setState((s) => ({ ...s, error })),
    );
  }, [signedIn, tick]);
  return { ...state, reload };
}

function Nav({ session, path }) {
  const links = [["/apps", "Apps"], ["/datasets", "Knowledge"], ["/tools", "Tools"], ["/providers", "Model providers"], ["/members", "Members"]];
  const switchTo = async (tenantId) => {
    await api.post("/workspaces/switch", { tenant_id: tenantId });
    forget();
    session.reload();
    navigate("/apps");
  };
  const signOut = async () => {
    try { await api.post("/logout"); } catch { /* signed out either way */ }
    tokens.clear();
    forget();
    signedOut.dispatchEvent(new Event("signedout"));
  };
  return html`<header class="top">
    <a class="brand" href=${href("/apps")}>Conduit</a>
    <nav aria-label="Main">
      ${links.map(([to, label]) => html`<a href=${href(to)} aria-current=${path.startsWith(to) ? "page" : undefined}>${label}</a>`)}
    </nav>
    <div class="account">
      ${session.workspaces.length > 0 && html`<label class="workspace">
        <span>Workspace</span>
        <select value=${session.workspace ? session.workspace.id : ""} onChange=${(e) => switchTo(e.currentTarget.value)}>
          ${session.workspaces.map((w) => html`<option value=${w.id} selected=${w.current}>${w.name} (${w.role})</option>`)}
        </select>
      </label>`}
      <span class="who">${session.profile ? session.profile.email : ""}</span>
      <button class="button secondary" onClick=${signOut}>Sign out</button>
    </div>
  </header>`;
}

function Shell() {
  const where = useLocation();
  const [signedIn, setSignedIn] = useState(Boolean(tokens.access));
  useEffect(() => {
    const out = () => setSignedIn(false);
    signedOut.addEventListener("signedout", out);
    return () => signedOut.removeEventListener("signedout", out);
  }, []);
  const account = useAccount(signedIn);
  const onSignedIn = () => {
    setSignedIn(true);
    // The hash as it is now: the redirect to sign-in used replaceState (no hashchange).
    const back = parseHash().query.next;
    navigate(back && back.startsWith("/") && back !== "/signin" ? back : "/apps");
  };
  const route = signedIn ? match(where.path) : match("/signin");
  const { page, error } = usePage(route ? route.module : null);
  useEffect(() => {
    if (!signedIn && where.path !== "/signin") {
      history.replaceState(null, "", `#/signin?next=${encodeURIComponent(where.path)}`);
    }
    if (signedIn && where.path === "/signin") navigate("/apps");
  }, [signedIn, where.path]);
  if (!signedIn) {
    return html`<main id="main">${page ? html`<${page.default} onSignedIn=${onSignedIn} />` : html`<${Loading} />`}</main>`;
  }
  const session = { ...account, signOut: () => setSignedIn(false) };
  return html`<${SessionContext.Provider} value=${session}>
    <a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); document.getElementById("main").focus(); }}>Skip to content</a>
    <${Nav} session=${session} path=${where.path} />
    <main id="main" tabindex="-1">
      <${ErrorBox} error=${account.error} onRetry=${account.reload} />
      ${!route && html`<h1>Page not found</h1><p>No console page is at <code>${where.path}</code>. <a href=${href("/apps")}>Go to the apps</a>.</p>`}
      ${route && error && html`<${ErrorBox} error=${error} />`}
      ${route && !error && !page && html`<${Loading} />`}
      ${route && page && html`<${page.default} params=${route.params} query=${where.query} key=${where.path} />`}
    </main>
  <//>`;
}

const root = document.getElementById("root");
root.textContent = ""; // the static "Loading…" line
render(html`<${Shell} />`, root);
