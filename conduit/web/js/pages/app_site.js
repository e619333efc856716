// An app's public web page (its "site", `GET/POST /apps/{id}/site`): the link end users open
// (`/chat|completion|workflow/{code}` by mode), switching it on and off
// (`POST /apps/{id}/site-enable`), a new code (`…/site/access-token-reset`: the old link stops
// working), who may use it (anyone with the link, or the workspace's members signed in), and
// the texts the page shows.
import { html, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { api, invalidate, useResource } from "../api.js";
import { AppPage } from "../app_nav.js";
import { atLeast, useSession } from "../session.js";
import { Button, Dialog, ErrorBox, Field, Loaded, Notice, PageHeader, useAction } from "../ui.js";
import { CopyButton } from "./app_keys.js";

const KIND = { chat: "chat", "agent-chat": "chat", "advanced-chat": "chat", completion: "completion", workflow: "workflow" };

export function siteLink(mode, code) {
  return `${location.origin}/${KIND[mode] || "chat"}/${code}`;
}

const ACCESS_MODES = [
  { value: "public", label: "Anyone with the link" },
  { value: "private_all", label: "Members of this workspace, signed in" },
];

const TEXTS = [
  ["title", "Title", "input"],
  ["description", "Description", "textarea"],
  ["input_placeholder", "Input placeholder", "input"],
  ["copyright", "Copyright", "input"],
  ["privacy_policy", "Privacy policy (URL)", "input"],
  ["custom_disclaimer", "Disclaimer", "textarea"],
  ["default_language", "Default language (e.g. en-US)", "input"],
];

function Texts({ appId, site, canEdit, reloadSite }) {
  const [values, setValues] = useState(() => Object.fromEntries(TEXTS.map(([name]) => [name, site[name] || ""])));
  const [saved, setSaved] = useState(false);
  const [save, busy, error] = useAction(async () => {
    setSaved(false);
    // Only what changed: "" clears a text, and the stored values stay as they are.
    const changed = Object.fromEntries(Object.entries(values).filter(([name, v]) => v !== (site[name] || "")));
    await api.post(`/apps/${appId}/site`, changed);
    reloadSite();
    setSaved(true);
  });
  return html`<section class="panel" aria-labelledby="texts-title">
    <h2 id="texts-title">What the page shows</h2>
    <form onSubmit=${(e) => { e.preventDefault(); save(); }}>
      ${TEXTS.map(([name, label, as]) => html`<${Field} key=${name} label=${label} as=${as} value=${values[name]}
        disabled=${!canEdit} onInput=${(v) => setValues({ ...values, [name]: v })} />`)}
      <${ErrorBox} error=${error} />
      ${saved && html`<${Notice}>Site texts saved.<//>`}
      ${canEdit && html`<${Button} kind="primary" type="submit" busy=${busy}>Save texts<//>`}
    </form>
  </section>`;
}

function Access({ app, site, reloadApp, reloadSite, canEdit, canReset }) {
  const [confirming, setConfirming] = useState(false);
  const [notice, setNotice] = useState("");
  const [toggle, toggling, toggleError] = useAction(async () => {
    const enable = !app.enable_site;
    await api.post(`/apps/${app.id}/site-enable`, { enable_site: enable });
    invalidate("/apps?");
    reloadApp(); // read again with the old value on screen meanwhile
    setNotice(enable ? "The site is on: the link works." : "The site is off: the link is refused.");
  });
  const [mode, setMode] = useState(site.access_mode || "public");
  const [setAccess, settingAccess, accessError] = useAction(async (value) => {
    const before = mode;
    setMode(value);
    try {
      await api.post(`/apps/${app.id}/site`, { access_mode: value });
    } catch (error) {
      setMode(before); // refused: the mode on screen is the stored one
      throw error;
    }
    reloadSite();
    setNotice(value === "public" ? "Anyone with the link may use the site." : "Only the members of this workspace, signed in, may use the site.");
  });
  const [reset, resetting, resetError] = useAction(async () => {
    await api.post(`/apps/${app.id}/site/access-token-reset`);
    reloadSite();
    setConfirming(false);
    setNotice("A new link is in place: the old one no longer works.");
  });
  const link = siteLink(app.mode, site.code);
  return html`<section class="panel" aria-labelledby="access-title">
    <h2 id="access-title">Link</h2>
    <p>Status: <span class=${`status ${app.enable_site ? "succeeded" : "failed"}`}>${app.enable_site ? "on" : "off"}</span></p>
    <p><a href=${link} target="_blank" rel="noopener" data-testid="site-link">${link}</a> <small class="muted">(opens in a new tab)</small></p>
    <div class="row">
      <${CopyButton} text=${link} label="Copy the link" />
      ${canEdit && html`<${Button} busy=${toggling} onClick=${toggle}>${app.enable_site ? "Turn the site off" : "Turn the site on"}<//>`}
      ${canReset && html`<${Button} kind="danger" onClick=${() => setConfirming(true)}>Make a new link<//>`}
    </div>
    <${Field} label="Who may use it" as="select" value=${mode} disabled=${!canEdit || settingAccess}
      onInput=${setAccess} options=${ACCESS_MODES} />
    <${ErrorBox} error=${toggleError || accessError} />
    <${Notice}>${notice}<//>
    <${Dialog} title="Make a new link?" open=${confirming} onClose=${() => setConfirming(false)}>
      <p>The site gets a new code; <code>${link}</code> stops working for everyone who has it.</p>
      <${ErrorBox} error=${resetError} />
      <div class="row">
        <${Button} kind="danger" busy=${resetting} onClick=${reset}>Make a new link<//>
        <${Button} onClick=${() => setConfirming(false)}>Cancel<//>
      </div>
    <//>
  </section>`;
}

export default function AppSite({ params }) {
  const session = useSession();
  const site = useResource(`/apps/${params.appId}/site`);
  return html`<${AppPage} appId=${params.appId} current="/site">${(app, reloadApp) => html`
    <${PageHeader} title=${`${app.name}: site`} />
    <${Loaded} resource=${site} what="Loading the site">${(reply) => html`
      <${Access} app=${app} site=${reply.data} reloadApp=${reloadApp} reloadSite=${site.reload}
        canEdit=${atLeast(session, "editor")} canReset=${atLeast(session, "admin")} />
      <${Texts} key=${app.id} appId=${app.id} site=${reply.data} reloadSite=${site.reload} canEdit=${atLeast(session, "editor")} />`}<//>`}<//>`;
}
