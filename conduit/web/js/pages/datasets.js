// Knowledge: the workspace's datasets (`GET /datasets`), a new one (name, description,
// indexing technique) and deleting one (confirmed in a dialog); the workspace's external
// knowledge APIs (added after the server reached them, deleted when no dataset uses them) and
// an external dataset connected to one of them.
import { html, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { api, invalidate, useResource } from "../api.js";
import { href, navigate } from "../router.js";
import { atLeast, useSession } from "../session.js";
import { Button, Dialog, ErrorBox, Field, Loaded, PageHeader, Table, formatTime, useAction } from "../ui.js";

const TECHNIQUES = [
  { value: "high_quality", label: "High quality (embeddings)" },
  { value: "economy", label: "Economy (keywords)" },
];

function CreateDataset({ onClose }) {
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [technique, setTechnique] = useState("high_quality");
  const [create, busy, error] = useAction(async () => {
    const made = await api.post("/datasets", { name, description, indexing_technique: technique });
    invalidate("/datasets");
    navigate(`/datasets/${made.data.id}`);
  });
  return html`<form onSubmit=${(e) => { e.preventDefault(); create(); }}>
    <${Field} label="Name" required maxlength="40" value=${name} onInput=${setName} />
    <${Field} label="Description" as="textarea" value=${description} onInput=${setDescription} />
    <${Field} label="Indexing technique" as="select" options=${TECHNIQUES} value=${technique} onInput=${setTechnique}
      hint="High quality embeds each segment; economy indexes keywords only." />
    <${ErrorBox} error=${error} />
    <div class="row">
      <${Button} kind="primary" type="submit" busy=${busy}>Create dataset<//>
      <${Button} type="button" onClick=${onClose}>Cancel<//>
    </div>
  </form>`;
}

function AddExternalApi({ onClose }) {
  const [name, setName] = useState("");
  const [endpoint, setEndpoint] = useState("");
  const [apiKey, setApiKey] = useState("");
  const [add, busy, error] = useAction(async () => {
    await api.post("/datasets/external-knowledge-api", { name, settings: { endpoint, api_key: apiKey } });
    invalidate("/datasets/external-knowledge-api");
    onClose();
  });
  return html`<form onSubmit=${(e) => { e.preventDefault(); add(); }}>
    <${Field} label="API name" required maxlength="100" value=${name} onInput=${setName} />
    <${Field} label="Endpoint" type="url" required value=${endpoint} onInput=${setEndpoint}
      hint="The service's base URL: Conduit posts to it with /retrieval added, and checks it answers before saving." />
    <${Field} label="API key" type="password" required value=${apiKey} onInput=${setApiKey} autocomplete="off" />
    <${ErrorBox} error=${error} />
    <div class="row">
      <${Button} kind="primary" type="submit" busy=${busy}>Add API<//>
      <${Button} type="button" onClick=${onClose}>Cancel<//>
    </div>
  </form>`;
}

function ConnectExternal({ apis, onClose }) {
  const options = apis.map((a) => ({ value: a.id, label: a.name }));
  const [apiId, setApiId] = useState(options.length ? options[0].value : "");
  const [knowledgeId, setKnowledgeId] = useState("");
  const [name, setName] = useState("");
  const [connect, busy, error] = useAction(async () => {
    const made = await api.post("/datasets/external", {
      name, external_knowledge_api_id: apiId, external_knowledge_id: knowledgeId,
    });
    invalidate("/datasets");
    invalidate("/datasets/external-knowledge-api");
    navigate(`/datasets/${made.id}`);
  });
  if (!options.length) return html`<p>Add an external knowledge API first.</p>`;
  return html`<form onSubmit=${(e) => { e.preventDefault(); connect(); }}>
    <${Field} label="External knowledge API" as="select" options=${options} value=${apiId} onInput=${setApiId} />
    <${Field} label="External knowledge ID" required value=${knowledgeId} onInput=${setKnowledgeId}
      hint="The knowledge base's id in the external service." />
    <${Field} label="Dataset name" required maxlength="40" value=${name} onInput=${setName} />
    <${ErrorBox} error=${error} />
    <div class="row">
      <${Button} kind="primary" type="submit" busy=${busy}>Connect<//>
      <${Button} type="button" onClick=${onClose}>Cancel<//>
    </div>
  </form>`;
}

function ExternalApis({ editor }) {
  const list = useResource("/datasets/external-knowledge-api", { limit: 100 });
  const [adding, setAdding] = useState(false);
  const [connecting, setConnecting] = useState(false);
  const [remove, removing, removeError] = useAction(async (item) => {
    await api.delete(`/datasets/external-knowledge-api/${item.id}`);
    invalidate("/datasets/external-knowledge-api");
  });
  return html`<section class="panel" aria-labelledby="external-title">
    <div class="page-header">
      <h2 id="external-title">External knowledge APIs</h2>
      ${editor && html`<div class="row">
        <${Button} onClick=${() => setAdding(true)}>Add external knowledge API<//>
        <${Button} onClick=${() => setConnecting(true)}>Connect external knowledge base<//>
      </div>`}
    </div>
    <${ErrorBox} error=${removeError} />
    <${Loaded} resource=${list} what="Loading the external knowledge APIs">${(data) => html`
      <${Table} caption=${`${data.total} external knowledge API${data.total === 1 ? "" : "s"}`}
        empty="None yet: add one to search a knowledge base kept by another service (Dify's External Knowledge API)."
        rows=${data.data}
        columns=${[
          { label: "Name", render: (a) => a.name },
          { label: "Endpoint", render: (a) => html`<code>${a.settings.endpoint}</code>` },
          { label: "API key", render: (a) => html`<code>${a.settings.api_key}</code>` },
          { label: "Datasets", render: (a) => (a.dataset_bindings.length ? a.dataset_bindings.map((d) => d.name).join(", ") : html`<span class="muted">none</span>`) },
          { label: "Actions", render: (a) => editor && html`<${Button} kind="danger" busy=${removing} aria-label=${`Delete ${a.name}`} onClick=${() => remove(a)}>Delete<//>` },
        ]} />
      <${Dialog} title="Connect external knowledge base" open=${connecting} onClose=${() => setConnecting(false)}>
        <${ConnectExternal} apis=${data.data} onClose=${() => setConnecting(false)} />
      <//>`}<//>
    <${Dialog} title="Add external knowledge API" open=${adding} onClose=${() => setAdding(false)}>
      <${AddExternalApi} onClose=${() => setAdding(false)} />
    <//>
  </section>`;
}

export default function Datasets() {
  const session = useSession();
  const [keyword, setKeyword] = useState("");
  const [page, setPage] = useState(1);
  const list = useResource("/datasets", { page, limit: 20, keyword });
  const [creating, setCreating] = useState(false);
  const [doomed, setDoomed] = useState(null);
  const [remove, removing, removeError, setRemoveError] = useAction(async () => {
    await api.delete(`/datasets/${doomed.id}`);
    setDoomed(null);
    invalidate("/datasets");
  });
  const editor = atLeast(session, "editor");
  return html`
    <${PageHeader} title="Knowledge">
      ${editor && html`<${Button} kind="primary" onClick=${() => setCreating(true)}>New dataset<//>`}
    <//>
    <form class="row" role="search" onSubmit=${(e) => e.preventDefault()}>
      <${Field} label="Search datasets" type="search" value=${keyword} onInput=${(v) => { setKeyword(v); setPage(1); }} />
    </form>
    <${Loaded} resource=${list} what="Loading the datasets">${(data) => html`
      <${Table} caption=${`${data.total} dataset${data.total === 1 ? "" : "s"}`}
        empty=${keyword ? "No dataset matches this search." : "No dataset yet: create one, then upload documents to it."}
        rows=${data.data}
        columns=${[
          { label: "Name", render: (d) => html`<a href=${href(`/datasets/${d.id}`)}>${d.name}</a>${d.description && html`<div class="muted">${d.description}</div>`}` },
          { label: "Indexing", render: (d) => (d.provider === "external" ? `External: ${d.external_knowledge_info.external_knowledge_api_name}` : d.indexing_technique === "economy" ? "Economy" : "High quality") },
          { label: "Documents", render: (d) => (d.provider === "external" ? "–" : d.document_count) },
          { label: "Words", render: (d) => (d.provider === "external" ? "–" : d.word_count) },
          { label: "Updated", render: (d) => formatTime(d.updated_at) },
          { label: "Actions", render: (d) => editor && html`<${Button} kind="danger" aria-label=${`Delete ${d.name}`} onClick=${() => { setRemoveError(null); setDoomed(d); }}>Delete<//>` },
        ]} />
      <div class="row">
        ${page > 1 && html`<${Button} onClick=${() => setPage(page - 1)}>Previous page<//>`}
        ${data.has_more && html`<${Button} onClick=${() => setPage(page + 1)}>Next page<//>`}
      </div>`}<//>
    <${ExternalApis} editor=${editor} />
    <${Dialog} title="New dataset" open=${creating} onClose=${() => setCreating(false)}>
      <${CreateDataset} onClose=${() => setCreating(false)} />
    <//>
    <${Dialog} title="Delete this dataset?" open=${Boolean(doomed)} onClose=${() => setDoomed(null)}>
      ${doomed && html`<p>“${doomed.name}” and its ${doomed.document_count} document(s) will be deleted. Apps using it lose it.</p>`}
      <${ErrorBox} error=${removeError} />
      <div class="row">
        <${Button} kind="danger" busy=${removing} onClick=${remove}>Delete<//>
        <${Button} onClick=${() => setDoomed(null)}>Cancel<//>
      </div>
    <//>`;
}
