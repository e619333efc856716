// An app's Service API keys (`/apps/{id}/api-keys`): listed masked; a new key's token is shown
// once, in a dialog with a copy button; delete after a confirm.
import { html, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { api, invalidate, useResource } from "../api.js";
import { AppPage } from "../app_nav.js";
import { atLeast, useSession } from "../session.js";
import { Button, Dialog, ErrorBox, Loaded, Notice, PageHeader, Table, formatTime, useAction } from "../ui.js";

export function CopyButton({ text, label = "Copy" }) {
  const [state, setState] = useState("");
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setState("Copied.");
    } catch (error) {
      setState(`Could not copy (${error.message}): select the text and copy it by hand.`);
    }
  };
  return html`<span class="row"><${Button} onClick=${copy}>${label}<//><span role="status" aria-live="polite">${state}</span></span>`;
}

function NewKey({ created, onClose }) {
  return html`<${Dialog} title="Your new API key" open=${Boolean(created)} onClose=${onClose}>
    <p class="warning" role="note"><strong>Copy it now:</strong> this is the only time the full key is shown. Keep it secret, on your server; anyone with it can call the app.</p>
    <p class="secret" data-testid="new-key">${created && created.token}</p>
    <div class="row">
      <${CopyButton} text=${created ? created.token : ""} label="Copy the key" />
      <${Button} kind="primary" onClick=${onClose}>Done<//>
    </div>
  <//>`;
}

export default function AppKeys({ params }) {
  const session = useSession();
  const canEdit = atLeast(session, "editor");
  const path = `/apps/${params.appId}/api-keys`;
  const keys = useResource(path);
  const [created, setCreated] = useState(null);
  const [deleting, setDeleting] = useState(null);
  const [notice, setNotice] = useState("");
  const [create, creating, createError] = useAction(async () => {
    const reply = await api.post(path);
    invalidate(path);
    setCreated(reply.data);
  });
  const [remove, removing, removeError] = useAction(async () => {
    await api.delete(`${path}/${deleting.id}`);
    invalidate(path);
    setNotice(`Deleted the key ${deleting.token}: calls with it are refused from now on.`);
    setDeleting(null);
  });
  const columns = [
    { label: "Key", render: (k) => html`<code>${k.token}</code>` },
    { label: "Created", render: (k) => formatTime(k.created_at) },
    { label: "Last used", render: (k) => (k.last_used_at ? formatTime(k.last_used_at) : html`<span class="muted">never</span>`) },
  ];
  if (canEdit) {
    columns.push({
      label: "Actions",
      render: (k) => html`<${Button} kind="danger" onClick=${() => setDeleting(k)} aria-label=${`Delete key ${k.token}`}>Delete<//>`,
    });
  }
  return html`<${AppPage} appId=${params.appId} current="/keys">${(app) => html`
    <${PageHeader} title=${`${app.name}: API keys`}>
      ${canEdit && html`<${Button} kind="primary" busy=${creating} onClick=${create}>Create a key<//>`}
    <//>
    <p class="muted">Service API keys call this app at <code>${location.origin}/v1</code> (<code>Authorization: Bearer app-…</code>).</p>
    <${ErrorBox} error=${createError} />
    <${Notice}>${notice}<//>
    <${Loaded} resource=${keys} what="Loading the keys">${(reply) => html`
      <${Table} caption="Keys (masked)" columns=${columns} rows=${reply.data} empty="No keys yet: create one to call the app over the Service API." />`}<//>
    <${NewKey} created=${created} onClose=${() => setCreated(null)} />
    <${Dialog} title="Delete this key?" open=${Boolean(deleting)} onClose=${() => setDeleting(null)}>
      <p>Calls with <code>${deleting && deleting.token}</code> will be refused. This cannot be undone.</p>
      <${ErrorBox} error=${removeError} />
      <div class="row">
        <${Button} kind="danger" busy=${removing} onClick=${remove}>Delete the key<//>
        <${Button} onClick=${() => setDeleting(null)}>Cancel<//>
      </div>
    <//>`}<//>`;
}
