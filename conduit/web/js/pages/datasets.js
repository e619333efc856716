// Knowledge: the workspace's datasets (`GET /datasets`), a new one (name, description,
// indexing technique) and deleting one (confirmed in a dialog).
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
          { label: "Indexing", render: (d) => (d.indexing_technique === "economy" ? "Economy" : "High quality") },
          { label: "Documents", render: (d) => d.document_count },
          { label: "Words", render: (d) => d.word_count },
          { label: "Updated", render: (d) => formatTime(d.updated_at) },
          { label: "Actions", render: (d) => editor && html`<${Button} kind="danger" aria-label=${`Delete ${d.name}`} onClick=${() => { setRemoveError(null); setDoomed(d); }}>Delete<//>` },
        ]} />
      <div class="row">
        ${page > 1 && html`<${Button} onClick=${() => setPage(page - 1)}>Previous page<//>`}
        ${data.has_more && html`<${Button} onClick=${() => setPage(page + 1)}>Next page<//>`}
      </div>`}<//>
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
