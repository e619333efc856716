// The end-user web app of a site: `/chat/{code}`, `/completion/{code}`, `/workflow/{code}`;
// and the page of a paused workflow run's form, `/form/{token}` (webapp/form.js).
// It takes a passport for the code, reads the site and the app's parameters, then shows the
// page of the address's kind. A bad code or a disabled site is said in the server's words.
import { html, render, useEffect, useLayoutEffect, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { Button, ErrorBox, Field, Loading, useAction } from "../ui.js";
import { LOGIN_KEY, SIGN_IN_CODES, webClient } from "./api.js";
import { FormPage } from "./form.js";

const KINDS = { chat: "./chat.js", completion: "./completion.js", workflow: "./workflow.js" };

function where() {
  const [, kind, code] = location.pathname.split("/");
  return { kind, code: decodeURIComponent(code || "") };
}

function useSite(client) {
  const [state, setState] = useState(() => {
    const both = client.early(["/site", "/parameters"]);
    return both ? { site: both[0], parameters: both[1], error: null, fresh: true } : { site: null, parameters: null, error: null };
  });
  const [tick, setTick] = useState(0);
  useLayoutEffect(() => { // at commit, not a frame later (see ../api.js)
    if (state.fresh && tick === 0) return; // the boot script's replies, just arrived
    setState({ site: null, parameters: null, error: null });
    Promise.all([client.get("/site"), client.get("/parameters")]).then(
      ([site, parameters]) => setState({ site, parameters, error: null }),
      (error) => setState({ site: null, parameters: null, error }),
    );
  }, [tick]);
  return { ...state, reload: () => setTick((t) => t + 1) };
}

// The page's module (in the page's bundle): the first render waits for it, not showing "Loading…".
const here = where();
const [preloaded] = await Promise.all([
  KINDS[here.kind] ? import(KINDS[here.kind]).then((m) => m.default, () => null) : null,
  // Its first reads too (a moment at most): one first render with the data, not two.
  globalThis.conduitBoot ? globalThis.conduitBoot.arrived(400) : null,
]);

function usePage(kind) {
  const [state, setState] = useState({ page: preloaded, error: null });
  useLayoutEffect(() => {
    if (state.page) return;
    import(KINDS[kind]).then(
      (m) => setState({ page: m.default, error: null }),
      (error) => setState({ page: null, error: new Error(`This page could not be loaded: ${error.message}`) }),
    );
  }, [kind]);
  return state;
}

// A site open to the members of its workspace only: sign in with a Conduit account (the
// server's words when it refuses), then the site is read again.
function SignIn({ client, error, onSignedIn }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const denied = error.code === "web_app_access_denied";
  const [submit, busy, failed] = useAction(async () => {
    await client.signIn(email, password);
    onSignedIn();
  });
  document.title = "Sign in to use this app";
  return html`<main id="main" class="webapp unavailable">
    <h1>Sign in to use this app</h1>
    <p>${denied
      ? "Your account may not use this app: it is open to the members of its workspace only. Sign in with another account."
      : "This app is open to the members of its workspace only. Sign in with your Conduit account."}</p>
    <form class="panel" aria-label="Sign in" onSubmit=${(e) => { e.preventDefault(); submit(); }}>
      <${Field} label="Email" type="email" autocomplete="username" required value=${email} onInput=${setEmail} />
      <${Field} label="Password" type="password" autocomplete="current-password" required value=${password} onInput=${setPassword} />
      <${ErrorBox} error=${failed} />
      <${Button} kind="primary" type="submit" busy=${busy}>Sign in<//>
    </form>
  </main>`;
}

function WebApp({ kind, client }) {
  const loaded = useSite(client);
  const page = usePage(kind);
  const site = loaded.site ? loaded.site.site || loaded.site : null;
  useEffect(() => { if (site) document.title = site.title; }, [site]);
  if (loaded.error && SIGN_IN_CODES.includes(loaded.error.code)) {
    return html`<${SignIn} client=${client} error=${loaded.error} onSignedIn=${loaded.reload} />`;
  }
  if (loaded.error || page.error) {
    document.title = "This app is not available";
    return html`<main id="main" class="webapp unavailable">
      <h1>This app is not available</h1>
      <${ErrorBox} error=${loaded.error || page.error} onRetry=${loaded.error ? loaded.reload : undefined} />
    </main>`;
  }
  if (!site || !page.page) return html`<main id="main" class="webapp"><h1 class="visually-hidden">Loading</h1><${Loading} /></main>`;
  const Page = page.page;
  return html`<div class="webapp-shell">
    <header class="site-header">
      ${site.icon_type === "emoji" && site.icon && html`<span class="site-icon" aria-hidden="true" style=${{ background: site.icon_background || "transparent" }}>${site.icon}</span>`}
      ${site.icon_type === "image" && site.icon_url && html`<img class="site-icon" src=${site.icon_url} alt="" />`}
      <div>
        <h1>${site.title}</h1>
        ${site.description && html`<p class="site-description">${site.description}</p>`}
      </div>
      ${localStorage.getItem(LOGIN_KEY) && html`<${Button} class="button secondary site-sign-out"
        onClick=${() => { client.signOut(); location.reload(); }}>Sign out<//>`}
    </header>
    <main id="main" class=${`webapp kind-${kind}`}>
      <${Page} client=${client} site=${site} parameters=${loaded.parameters} />
    </main>
    <footer class="site-footer">
      ${site.copyright && html`<span>© ${site.copyright}</span>`}
      ${site.privacy_policy && html`<a href=${site.privacy_policy} rel="noopener">Privacy policy</a>`}
      ${site.custom_disclaimer && html`<span>${site.custom_disclaimer}</span>`}
    </footer>
  </div>`;
}

function NotFound() {
  document.title = "Page not found";
  return html`<main id="main" class="webapp unavailable"><h1>Page not found</h1>
    <div class="error" role="alert">This address names no app: it should be /chat/, /completion/ or /workflow/ followed by the app's code.</div></main>`;
}

const { kind, code } = where();
const root = document.getElementById("root");
root.textContent = "";
if (kind === "form" && code) render(html`<${FormPage} token=${code} />`, root);
else render(KINDS[kind] && code ? html`<${WebApp} kind=${kind} client=${webClient(code)} />` : html`<${NotFound} />`, root);
