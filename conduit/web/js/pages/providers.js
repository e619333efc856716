// The workspace's model providers (`/workspaces/current/model-providers`): OpenAI-compatible
// endpoints with their models; add, edit, test (a one-token call, the outcome in words), make
// the default, delete. Keys go in and only come out masked.
import { html, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { api, invalidate, useResource } from "../api.js";
import { atLeast, useSession } from "../session.js";
import { Button, Dialog, ErrorBox, Field, Loaded, Notice, PageHeader, Table, formatTime, useAction } from "../ui.js";

const PATH = "/workspaces/current/model-providers";
const HIDDEN = "[__HIDDEN__]";

const list = (text) => text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);

function ProviderForm({ provider, onDone, onCancel }) {
  const editing = Boolean(provider);
  const [name, setName] = useState(provider ? provider.name : "");
  const [baseUrl, setBaseUrl] = useState(provider ? provider.base_url : "");
  const [apiKey, setApiKey] = useState("");
  const [models, setModels] = useState(provider ? provider.models.join(", ") : "");
  const [embeddings, setEmbeddings] = useState(provider ? provider.embedding_models.join(", ") : "");
  const [rerankers, setRerankers] = useState(provider ? provider.rerank_models.join(", ") : "");
  const [isDefault, setIsDefault] = useState(provider ? provider.is_default : false);
  const [save, busy, error] = useAction(async () => {
    const body = { name, base_url: baseUrl, models: list(models), embedding_models: list(embeddings), rerank_models: list(rerankers), is_default: isDefault };
    if (editing) {
      body.api_key = apiKey || HIDDEN; // empty: keep the stored key
      await api.put(`${PATH}/${provider.id}`, body);
    } else {
      if (apiKey) body.api_key = apiKey;
      await api.post(PATH, body);
    }
    invalidate(PATH);
    onDone(editing ? `Saved “${name}”.` : `Added “${name}”.`);
  });
  return html`<form onSubmit=${(e) => { e.preventDefault(); save(); }}>
    <${Field} label="Name" required value=${name} onInput=${setName} />
    <${Field} label="Base URL" type="url" required placeholder="https://api.example.com/v1" value=${baseUrl} onInput=${setBaseUrl}
      hint="The OpenAI-compatible API's root: it serves POST {base URL}/chat/completions." />
    <${Field} label="API key" type="password" autocomplete="off" value=${apiKey} onInput=${setApiKey}
      hint=${editing ? `Stored: ${provider.api_key || "none"}. Leave empty to keep it.` : "Optional for endpoints without keys."} />
    <${Field} label="Models" value=${models} onInput=${setModels} hint="Comma-separated chat model names (empty: any)." />
    <${Field} label="Embedding models" value=${embeddings} onInput=${setEmbeddings} hint="Comma-separated; for knowledge datasets." />
    <${Field} label="Rerank models" value=${rerankers} onInput=${setRerankers} hint="Comma-separated; served at POST {base URL}/rerank, to rerank a dataset's search." />
    <${Field} label="Make it the workspace's default" type="checkbox" value=${isDefault} onInput=${setIsDefault} />
    <${ErrorBox} error=${error} />
    <div class="row">
      <${Button} kind="primary" type="submit" busy=${busy}>${editing ? "Save" : "Add provider"}<//>
      <${Button} type="button" onClick=${onCancel}>Cancel<//>
    </div>
  </form>`;
}

function TestResult({ result }) {
  if (!result) return null;
  if (result.ok) return html`<span class="status succeeded" role="status">Works: ${result.model} answered.</span>`;
  return html`<${ErrorBox} error=${result.error} />`;
}

export default function Providers() {
  const session = useSession();
  const canEdit = atLeast(session, "admin");
  const providers = useResource(PATH);
  const [editing, setEditing] = useState(null); // null, "new" or a provider
  const [deleting, setDeleting] = useState(null);
  const [notice, setNotice] = useState("");
  const [results, setResults] = useState({}); // provider id → {ok, model, error}
  const [testing, setTesting] = useState(null);
  const test = async (p) => {
    setTesting(p.id);
    const model = p.models[0];
    try {
      await api.post(`${PATH}/${p.id}/test`, model ? { model } : {});
      setResults((r) => ({ ...r, [p.id]: { ok: true, model: model || "The default model" } }));
    } catch (error) {
      setResults((r) => ({ ...r, [p.id]: { ok: false, error } }));
    } finally {
      setTesting(null);
    }
  };
  const [makeDefault, , defaultError] = useAction(async (p) => {
    await api.put(`${PATH}/${p.id}`, { is_default: true });
    invalidate(PATH);
    setNotice(`“${p.name}” is now the workspace's default.`);
  });
  const [remove, removing, removeError] = useAction(async () => {
    await api.delete(`${PATH}/${deleting.id}`);
    invalidate(PATH);
    setNotice(`Deleted “${deleting.name}”.`);
    setDeleting(null);
  });
  const columns = [
    { label: "Name", render: (p) => html`<strong>${p.name}</strong>${p.is_default && html` <span class="status succeeded">default</span>`}` },
    { label: "Base URL", render: (p) => html`<code>${p.base_url}</code>` },
    { label: "Key", render: (p) => (p.error ? html`<span class="status failed">${p.error}</span>` : html`<code>${p.api_key || "none"}</code>`) },
    { label: "Models", render: (p) => (p.models.length ? p.models.join(", ") : html`<span class="muted">any</span>`) },
    { label: "Last used", render: (p) => (p.last_used_at ? formatTime(p.last_used_at) : html`<span class="muted">never</span>`) },
    {
      label: "Actions",
      render: (p) => html`<div class="row">
        <${Button} busy=${testing === p.id} onClick=${() => test(p)} aria-label=${`Test ${p.name}`}>Test<//>
        ${canEdit && !p.is_default && html`<${Button} onClick=${() => makeDefault(p)} aria-label=${`Make default: ${p.name}`}>Make default<//>`}
        ${canEdit && html`<${Button} onClick=${() => setEditing(p)} aria-label=${`Edit ${p.name}`}>Edit<//>`}
        ${canEdit && html`<${Button} kind="danger" onClick=${() => setDeleting(p)} aria-label=${`Delete ${p.name}`}>Delete<//>`}
      </div>
      <${TestResult} result=${results[p.id]} />`,
    },
  ];
  return html`<${PageHeader} title="Model providers">
      ${canEdit && html`<${Button} kind="primary" onClick=${() => setEditing("new")}>Add an endpoint<//>`}
    <//>
    <p class="muted">OpenAI-compatible endpoints this workspace's apps may use. Apps on the default provider use the workspace's default, or the server's model when there is none.</p>
    <${Notice}>${notice}<//>
    <${ErrorBox} error=${defaultError} />
    <${Loaded} resource=${providers} what="Loading the model providers">${(reply) => html`
      <${Table} caption="Endpoints" columns=${columns} rows=${reply.data} empty="No model providers yet: apps use the server's model." />`}<//>
    <${Dialog} title=${editing === "new" ? "Add an OpenAI-compatible endpoint" : `Edit ${editing ? editing.name : ""}`}
      open=${Boolean(editing)} onClose=${() => setEditing(null)}>
      <${ProviderForm} key=${editing === "new" ? "new" : editing && editing.id} provider=${editing === "new" ? null : editing}
        onCancel=${() => setEditing(null)} onDone=${(text) => { setEditing(null); setNotice(text); }} />
    <//>
    <${Dialog} title="Delete this provider?" open=${Boolean(deleting)} onClose=${() => setDeleting(null)}>
      <p>Apps that name <strong>${deleting && deleting.name}</strong> will fail to run until they pick another model.</p>
      <${ErrorBox} error=${removeError} />
      <div class="row">
        <${Button} kind="danger" busy=${removing} onClick=${remove}>Delete the provider<//>
        <${Button} onClick=${() => setDeleting(null)}>Cancel<//>
      </div>
    <//>`;
}
