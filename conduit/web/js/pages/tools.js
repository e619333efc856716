// The workspace's tools, which its agent apps may use: the built-in providers (read only) and
// its custom API tools (Dify's "custom tools": an OpenAPI 3 document of the team's own
// service, its operations the tools). Add one: the document is read first (its operations
// listed, or the server's words on what is wrong), then saved with how its key goes with each
// call; edit, delete (refused, in words, while an agent uses it). Keys go in and only come
// out masked.
import { html, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { api, invalidate, useResource } from "../api.js";
import { atLeast, useSession } from "../session.js";
import { Button, Dialog, ErrorBox, Field, Loaded, Notice, PageHeader, Table, useAction } from "../ui.js";

const PROVIDERS = "/workspaces/current/tool-providers";
const API = "/workspaces/current/tool-provider/api";
const HIDDEN = "[__HIDDEN__]";
const AUTH = [{ value: "none", label: "None" }, { value: "api_key", label: "API key in a header" }];
const PREFIXES = [
  { value: "bearer", label: "Bearer <key>" },
  { value: "basic", label: "Basic <key>" },
  { value: "custom", label: "The key alone" },
];

function Operations({ tools }) {
  return html`<ul class="operations" data-testid="operations">
    ${tools.map((t) => html`<li key=${t.operation_id}>
      <code>${t.method.toUpperCase()} ${t.path}</code> <strong>${t.operation_id}</strong>
      ${t.summary && t.summary !== t.operation_id && html` — ${t.summary}`}
      ${t.parameters.length > 0 && html`<span class="muted"> (${t.parameters.map((p) => `${p.name}${p.required ? "*" : ""}`).join(", ")})</span>`}
    </li>`)}
  </ul>`;
}

function ApiToolForm({ stored, onDone, onCancel }) {
  const editing = Boolean(stored);
  const credentials = (stored && stored.credentials) || {};
  const [name, setName] = useState(stored ? stored.provider : "");
  const [schema, setSchema] = useState(stored ? stored.schema : "");
  const [auth, setAuth] = useState(credentials.auth_type || "none");
  const [header, setHeader] = useState(credentials.api_key_header || "Authorization");
  const [prefix, setPrefix] = useState(credentials.api_key_header_prefix || "bearer");
  const [key, setKey] = useState("");
  const [read, setRead] = useState(stored ? stored.tools : null);
  const [readSchema, reading, readError] = useAction(async () => {
    setRead(null);
    const reply = await api.post(`${API}/schema`, { schema });
    setRead(reply.parameters_schema);
  });
  const [save, busy, error] = useAction(async () => {
    const body = {
      provider: name, schema_type: "openapi", schema, icon: { background: "#E0EAFF", content: "🔧" },
      credentials: { auth_type: auth, api_key_header: header, api_key_header_prefix: prefix,
        api_key_value: key || (editing ? HIDDEN : "") },
      privacy_policy: "", custom_disclaimer: "", labels: [],
    };
    if (editing) await api.post(`${API}/update`, { ...body, original_provider: stored.provider });
    else await api.post(`${API}/add`, body);
    invalidate(PROVIDERS);
    onDone(editing ? `Saved “${name}”.` : `Added “${name}”.`);
  });
  return html`<form onSubmit=${(e) => { e.preventDefault(); save(); }}>
    <${Field} label="Name" required value=${name} onInput=${setName} />
    <${Field} label="OpenAPI schema" as="textarea" rows="10" required value=${schema} onInput=${(v) => { setSchema(v); setRead(null); }}
      hint="An OpenAPI 3 document, JSON or YAML, with servers[0].url: each operation becomes a tool." />
    <${Button} type="button" busy=${reading} onClick=${readSchema} disabled=${!schema.trim()}>Read the schema<//>
    <${ErrorBox} error=${readError} />
    ${read && html`<p class="muted">${read.length} operation${read.length === 1 ? "" : "s"}:</p><${Operations} tools=${read} />`}
    <${Field} label="Authentication" as="select" value=${auth} onInput=${setAuth} options=${AUTH} />
    ${auth === "api_key" && html`<div class="row">
      <${Field} label="Header" value=${header} onInput=${setHeader} />
      <${Field} label="Key as" as="select" value=${prefix} onInput=${setPrefix} options=${PREFIXES} />
      <${Field} label="API key" type="password" autocomplete="off" value=${key} onInput=${setKey}
        hint=${editing && credentials.api_key_value ? `Stored: ${credentials.api_key_value}. Leave empty to keep it (for the same server).` : "Sent with each call, to this document's server only."} />
    </div>`}
    <${ErrorBox} error=${error} />
    <div class="row">
      <${Button} kind="primary" type="submit" busy=${busy}>${editing ? "Save" : "Add the tool"}<//>
      <${Button} type="button" onClick=${onCancel}>Cancel<//>
    </div>
  </form>`;
}

export default function Tools() {
  const session = useSession();
  const canEdit = atLeast(session, "editor");
  const providers = useResource(PROVIDERS);
  const [editing, setEditing] = useState(null); // null, "new" or a stored provider (/api/get)
  const [deleting, setDeleting] = useState(null);
  const [notice, setNotice] = useState("");
  const [openTool, , openError] = useAction(async (p) => setEditing(await api.get(`${API}/get`, { provider: p.name })));
  const [remove, removing, removeError] = useAction(async () => {
    await api.post(`${API}/delete`, { provider: deleting.name });
    invalidate(PROVIDERS);
    setNotice(`Deleted “${deleting.name}”.`);
    setDeleting(null);
  });
  const builtinColumns = [
    { label: "Provider", render: (p) => html`<span aria-hidden="true">${p.icon.content}</span> <strong>${p.label.en_US}</strong>` },
    { label: "Tools", render: (p) => p.tools.map((t) => t.label.en_US).join(", ") },
  ];
  const apiColumns = [
    { label: "Name", render: (p) => html`<strong>${p.name}</strong>` },
    { label: "Operations", render: (p) => p.tools.map((t) => t.name).join(", ") },
    {
      label: "Actions",
      render: (p) => canEdit && html`<div class="row">
        <${Button} onClick=${() => openTool(p)} aria-label=${`Edit ${p.name}`}>Edit<//>
        <${Button} kind="danger" onClick=${() => setDeleting(p)} aria-label=${`Delete ${p.name}`}>Delete<//>
      </div>`,
    },
  ];
  return html`<${PageHeader} title="Tools">
      ${canEdit && html`<${Button} kind="primary" onClick=${() => setEditing("new")}>Add a custom tool<//>`}
    <//>
    <p class="muted">What agent apps may call, chosen on an agent's settings page.</p>
    <${Notice}>${notice}<//>
    <${ErrorBox} error=${openError} />
    <${Loaded} resource=${providers} what="Loading the tools">${(all) => html`
      <${Table} caption="Custom API tools" columns=${apiColumns} rows=${all.filter((p) => p.type === "api")}
        empty="No custom tools yet: add one from an OpenAPI document of your service." />
      <${Table} caption="Built-in tools" columns=${builtinColumns} rows=${all.filter((p) => p.type === "builtin")} />`}<//>
    <${Dialog} title=${editing === "new" ? "Add a custom tool" : `Edit ${editing ? editing.provider : ""}`}
      open=${Boolean(editing)} onClose=${() => setEditing(null)}>
      <${ApiToolForm} key=${editing === "new" ? "new" : editing && editing.id} stored=${editing === "new" ? null : editing}
        onCancel=${() => setEditing(null)} onDone=${(text) => { setEditing(null); setNotice(text); }} />
    <//>
    <${Dialog} title="Delete this tool?" open=${Boolean(deleting)} onClose=${() => setDeleting(null)}>
      <p>Agents can no longer call <strong>${deleting && deleting.name}</strong>'s operations.</p>
      <${ErrorBox} error=${removeError} />
      <div class="row">
        <${Button} kind="danger" busy=${removing} onClick=${remove}>Delete the tool<//>
        <${Button} onClick=${() => setDeleting(null)}>Cancel<//>
      </div>
    <//>`;
}
