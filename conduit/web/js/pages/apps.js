// The workspace's apps (`GET /apps`): search by name, filter by mode, pages of 20; create in a
// dialog, copy, delete (after a confirm). Each app links to its settings page.
import { html, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { api, invalidate, useResource } from "../api.js";
import { href, navigate } from "../router.js";
import { atLeast, useSession } from "../session.js";
import { Button, Dialog, ErrorBox, Field, Loaded, Notice, PageHeader, Table, formatTime, useAction } from "../ui.js";

export const MODES = [
  { value: "chat", label: "Chat" },
  { value: "completion", label: "Completion" },
  { value: "agent-chat", label: "Agent chat" },
  { value: "workflow", label: "Workflow" },
  { value: "advanced-chat", label: "Chatflow (advanced chat)" },
];
const LIMIT = 20;

function CreateDialog({ open, onClose, onCreated }) {
  const [name, setName] = useState("");
  const [mode, setMode] = useState("chat");
  const [description, setDescription] = useState("");
  const [create, busy, error] = useAction(async () => {
    const reply = await api.post("/apps", { name, mode, description });
    invalidate("/apps");
    setName("");
    setDescription("");
    onCreated(reply.data);
  });
  return html`<${Dialog} title="Create an app" open=${open} onClose=${onClose}>
    <form onSubmit=${(e) => { e.preventDefault(); create(); }}>
      <${Field} label="Name" required value=${name} onInput=${setName} />
      <${Field} label="Mode" as="select" value=${mode} onInput=${setMode} options=${MODES} />
      <${Field} label="Description" as="textarea" value=${description} onInput=${setDescription} />
      <${ErrorBox} error=${error} />
      <div class="row">
        <${Button} kind="primary" type="submit" busy=${busy}>Create<//>
        <${Button} type="button" onClick=${onClose}>Cancel<//>
      </div>
    </form>
  <//>`;
}

function ConfirmDelete({ app, onClose, onDeleted }) {
  const [remove, busy, error] = useAction(async () => {
    await api.delete(`/apps/${app.id}`);
    invalidate("/apps");
    onDeleted(app);
  });
  return html`<${Dialog} title=${app ? `Delete “${app.name}”?` : "Delete"} open=${Boolean(app)} onClose=${onClose}>
    <p>The app, its API keys, its site and its logs go away. This cannot be undone.</p>
    <${ErrorBox} error=${error} />
    <div class="row">
      <${Button} kind="danger" busy=${busy} onClick=${remove}>Delete<//>
      <${Button} onClick=${onClose}>Cancel<//>
    </div>
  <//>`;
}

export default function Apps() {
  const session = useSession();
  const canEdit = atLeast(session, "editor");
  const [search, setSearch] = useState("");
  const [filter, setFilter] = useState({ name: "", mode: "all", page: 1 });
  const apps = useResource("/apps", { name: filter.name, mode: filter.mode, page: filter.page, limit: LIMIT });
  const [creating, setCreating] = useState(false);
  const [deleting, setDeleting] = useState(null);
  const [notice, setNotice] = useState("");
  const [copy, copying, copyError] = useAction(async (app) => {
    const reply = await api.post(`/apps/${app.id}/copy`, {});
    invalidate("/apps");
    setNotice(`Copied “${app.name}” as “${reply.data.name}”.`);
  });
  const columns = [
    { label: "Name", render: (a) => html`<a href=${href(`/apps/${a.id}`)}>${a.name}</a>` },
    { label: "Mode", render: (a) => (MODES.find((m) => m.value === a.mode) || { label: a.mode }).label },
    { label: "Description", render: (a) => html`<span class="muted">${a.description}</span>` },
    { label: "Updated", render: (a) => formatTime(a.updated_at) },
  ];
  if (canEdit) {
    columns.push({
      label: "Actions",
      render: (a) => html`<div class="row">
        <${Button} busy=${copying} onClick=${() => copy(a)} aria-label=${`Copy ${a.name}`}>Copy<//>
        <${Button} kind="danger" onClick=${() => setDeleting(a)} aria-label=${`Delete ${a.name}`}>Delete<//>
      </div>`,
    });
  }
  return html`<${PageHeader} title="Apps">
      ${canEdit && html`<${Button} kind="primary" onClick=${() => setCreating(true)}>Create app<//>`}
    <//>
    <form class="row filters" role="search" aria-label="Find apps"
      onSubmit=${(e) => { e.preventDefault(); setFilter({ ...filter, name: search.trim(), page: 1 }); }}>
      <${Field} label="Search by name" type="search" value=${search} onInput=${setSearch} />
      <${Field} label="Mode" as="select" value=${filter.mode}
        onInput=${(mode) => setFilter({ ...filter, mode, page: 1 })}
        options=${[{ value: "all", label: "All modes" }, ...MODES]} />
      <div class="field"><${Button} type="submit">Search<//></div>
    </form>
    <${Notice}>${notice}<//>
    <${ErrorBox} error=${copyError} />
    <${Loaded} resource=${apps} what="Loading the apps">${(reply) => html`
      <${Table} caption=${`${reply.total} app${reply.total === 1 ? "" : "s"}`} columns=${columns} rows=${reply.data}
        empty=${filter.name || filter.mode !== "all" ? "No app matches this search." : "No apps yet: create one."} />
      ${(reply.page > 1 || reply.has_more) && html`<nav class="row" aria-label="Pages">
        <${Button} disabled=${reply.page <= 1} onClick=${() => setFilter({ ...filter, page: reply.page - 1 })}>Previous page<//>
        <span>Page ${reply.page} of ${Math.max(1, Math.ceil(reply.total / reply.limit))}</span>
        <${Button} disabled=${!reply.has_more} onClick=${() => setFilter({ ...filter, page: reply.page + 1 })}>Next page<//>
      </nav>`}`}<//>
    <${CreateDialog} open=${creating} onClose=${() => setCreating(false)}
      onCreated=${(app) => { setCreating(false); navigate(`/apps/${app.id}`); }} />
    <${ConfirmDelete} app=${deleting} onClose=${() => setDeleting(null)}
      onDeleted=${(app) => { setDeleting(null); setNotice(`Deleted “${app.name}”.`); }} />`;
}
