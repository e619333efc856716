// A chat app's annotations: the answers some questions get without the model. The reply's
// switch (`…/annotation-setting`, `…/annotation-reply/{enable|disable}`: a job, followed here
// until it ends), then the annotations page by page with a search, and a dialog to write or
// edit one, each one's hits (`…/hit-histories`), an import from a CSV file
// (`…/annotations/batch-import`) and an export to one. Viewers read; editors write.
import { html, useEffect, useRef, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { api, invalidate, send, useResource } from "../api.js";
import { AnnotationForm } from "../annotation_form.js";
import { AppPage } from "../app_nav.js";
import { atLeast, useSession } from "../session.js";
import { Button, Dialog, ErrorBox, Field, Loaded, Notice, PageHeader, Table, formatTime, useAction } from "../ui.js";

const JOB_POLL_MS = 400;

export default function Annotations({ params }) {
  return html`<${AppPage} appId=${params.appId} current="/annotations">
    ${(app) => html`<${AppAnnotations} key=${app.id} app=${app} />`}
  <//>`;
}

function AppAnnotations({ app }) {
  const session = useSession();
  const editor = atLeast(session, "editor");
  const reply = app.mode === "chat" || app.mode === "agent-chat" || app.mode === "advanced-chat";
  return html`
    <${PageHeader} title=${`Annotations of ${app.name}`} />
    <p class="muted">An annotation is the answer a question should get. With the annotation reply on, a question close enough to an annotated one is answered with its annotation at once, without the model.</p>
    ${reply && html`<${ReplySwitch} app=${app} editor=${editor} />`}
    <${AnnotationList} app=${app} editor=${editor} />
    <${ImportExport} app=${app} editor=${editor} />`;
}

// --- the reply's switch ----------------------------------------------------------------------

function modelOptions(providers) {
  return providers.flatMap((p) => p.models.map((m) => ({
    value: `${p.provider}\n${m.model}`,
    label: `${m.model} (${p.label.en_US || p.provider})`,
  })));
}

function useJob(app, onDone) {
  const [job, setJob] = useState(null); // {action, job_id, job_status, error_msg}
  useEffect(() => {
    if (!job || job.job_status === "completed" || job.job_status === "error") return undefined;
    const timer = setTimeout(async () => {
      try {
        const status = await api.get(`/apps/${app.id}/annotation-reply/${job.action}/status/${job.job_id}`);
        setJob({ ...job, ...status });
        if (status.job_status === "completed" || status.job_status === "error") onDone();
      } catch (error) {
        setJob({ ...job, job_status: "error", error_msg: error.message });
      }
    }, JOB_POLL_MS);
    return () => clearTimeout(timer);
  }, [job]);
  return [job, setJob];
}

function ReplySwitch({ app, editor }) {
  const path = `/apps/${app.id}/annotation-setting`;
  const setting = useResource(path);
  const models = useResource(editor ? "/workspaces/current/models/model-types/text-embedding" : null);
  const [threshold, setThreshold] = useState("0.9");
  const [model, setModel] = useState("");
  const [job, setJob] = useJob(app, () => invalidate(path));
  const [start, starting, startError] = useAction(async (action) => {
    let body = {};
    if (action === "enable") {
      const options = modelOptions(models.data ? models.data.data : []);
      const [provider, name] = (model || (options[0] && options[0].value) || "\n").split("\n");
      body = { score_threshold: Number(threshold), embedding_provider_name: provider, embedding_model_name: name };
    }
    const started = await api.post(`/apps/${app.id}/annotation-reply/${action}`, body);
    setJob({ action, ...started });
  });
  const running = job && (job.job_status === "waiting" || job.job_status === "processing");
  return html`<section class="panel" aria-labelledby="reply-title" data-testid="annotation-reply">
    <h2 id="reply-title">Annotation reply</h2>
    <${Loaded} resource=${setting} what="Loading the annotation reply">${(s) => html`
      <p role="status" data-testid="reply-state">${s.enabled
        ? html`<strong>On</strong>: questions at least ${s.score_threshold} similar to an annotated one get its answer (embeddings by ${s.embedding_model.embedding_model_name}).`
        : html`<strong>Off</strong>: every question goes to the model.`}</p>
      ${editor && (s.enabled
        ? html`<${Button} busy=${starting || running} onClick=${() => start("disable")}>Turn the annotation reply off<//>`
        : html`<form class="row" aria-label="Turn the annotation reply on" onSubmit=${(e) => { e.preventDefault(); start("enable"); }}>
            <${Field} label="Least similarity (0 to 1)" type="number" min="0" max="1" step="0.01" required value=${threshold} onInput=${setThreshold} />
            <${Loaded} resource=${models} what="Loading the embedding models">${(m) => html`
              <${Field} label="Embedding model" as="select" options=${modelOptions(m.data)} value=${model || (modelOptions(m.data)[0] || {}).value} onInput=${setModel} />`}<//>
            <div class="field"><${Button} kind="primary" type="submit" busy=${starting || running}>Turn the annotation reply on<//></div>
          </form>`)}`}<//>
    ${job && html`<p class="muted" role="status" aria-live="polite" data-testid="reply-job">${job.action === "enable" ? "Turning on" : "Turning off"}: ${job.job_status}${job.error_msg ? ` (${job.error_msg})` : ""}</p>`}
    <${ErrorBox} error=${startError} />
  </section>`;
}

// --- the annotations ---------------------------------------------------------------------------

function AnnotationList({ app, editor }) {
  const [keyword, setKeyword] = useState("");
  const [page, setPage] = useState(1);
  const list = useResource(`/apps/${app.id}/annotations`, { page, limit: 20, keyword });
  const [editing, setEditing] = useState(null); // {} for a new one
  const [doomed, setDoomed] = useState(null);
  const [hitsOf, setHitsOf] = useState(null);
  const [notice, setNotice] = useState("");
  const [remove, removing, removeError, setRemoveError] = useAction(async () => {
    await api.delete(`/apps/${app.id}/annotations/${doomed.id}`);
    invalidate(`/apps/${app.id}/annotations`);
    setNotice("Deleted the annotation.");
    setDoomed(null);
  });
  const columns = [
    { label: "Question", render: (a) => html`<div class="clip">${a.question}</div>` },
    { label: "Answer", render: (a) => html`<div class="clip">${a.answer}</div>` },
    { label: "Hits", render: (a) => (a.hit_count
      ? html`<${Button} aria-label=${`${a.hit_count} hit${a.hit_count === 1 ? "" : "s"} of “${a.question}”: show them`} onClick=${() => setHitsOf(a)}>${a.hit_count}<//>`
      : 0) },
    { label: "Created", render: (a) => formatTime(a.created_at) },
  ];
  if (editor) {
    columns.push({
      label: "Actions",
      render: (a) => html`<span class="row">
        <${Button} aria-label=${`Edit the annotation of “${a.question}”`} onClick=${() => setEditing(a)}>Edit<//>
        <${Button} kind="danger" aria-label=${`Delete the annotation of “${a.question}”`} onClick=${() => { setRemoveError(null); setDoomed(a); }}>Delete<//>
      </span>`,
    });
  }
  return html`<section aria-labelledby="annotations-title">
    <h2 id="annotations-title">Annotations</h2>
    ${editor && html`<p><${Button} kind="primary" onClick=${() => setEditing({})}>Add an annotation<//></p>`}
    <form class="row" role="search" onSubmit=${(e) => e.preventDefault()}>
      <${Field} label="Search annotations" type="search" value=${keyword} onInput=${(v) => { setKeyword(v); setPage(1); }} />
    </form>
    <${Notice}>${notice}<//>
    <${Loaded} resource=${list} what="Loading the annotations">${(reply) => html`
      <div data-testid="annotations">
        <${Table} caption=${`${reply.total} annotation${reply.total === 1 ? "" : "s"}`} columns=${columns} rows=${reply.data}
          empty=${keyword ? "No annotation matches this search." : "No annotations yet: add one, or annotate an answer in the logs."} />
      </div>
      <nav class="row pager" aria-label="Pages of annotations">
        <${Button} disabled=${page <= 1} onClick=${() => setPage(page - 1)}>Previous page<//>
        <span>Page ${reply.page} of ${Math.max(1, Math.ceil(reply.total / reply.limit))}</span>
        <${Button} disabled=${!reply.has_more} onClick=${() => setPage(page + 1)}>Next page<//>
      </nav>`}<//>
    <${Dialog} title=${editing && editing.id ? "Edit the annotation" : "Add an annotation"} open=${Boolean(editing)} onClose=${() => setEditing(null)}>
      <${AnnotationForm} app=${app} annotation=${editing && editing.id ? editing : null}
        onDone=${(saved) => { if (saved) setNotice(editing && editing.id ? "Saved the annotation." : "Added the annotation."); setEditing(null); }} />
    <//>
    <${Dialog} title="Its hits" open=${Boolean(hitsOf)} onClose=${() => setHitsOf(null)}>
      ${hitsOf && html`<${Hits} app=${app} annotation=${hitsOf} />`}
      <div class="row"><${Button} onClick=${() => setHitsOf(null)}>Close<//></div>
    <//>
    <${Dialog} title="Delete this annotation?" open=${Boolean(doomed)} onClose=${() => setDoomed(null)}>
      ${doomed && html`<p>“${doomed.question}” will no longer be answered with its annotation.</p>`}
      <${ErrorBox} error=${removeError} />
      <div class="row">
        <${Button} kind="danger" busy=${removing} onClick=${remove}>Delete<//>
        <${Button} onClick=${() => setDoomed(null)}>Cancel<//>
      </div>
    <//>
  </section>`;
}

// --- its hits ----------------------------------------------------------------------------------

const SOURCES = { "service-api": "Service API", "web-app": "Web app", debugger: "Debugger" };

function Hits({ app, annotation }) {
  const [page, setPage] = useState(1);
  const hits = useResource(`/apps/${app.id}/annotations/${annotation.id}/hit-histories`, { page, limit: 10 });
  return html`<p>The questions “${annotation.question}” answered, newest first.</p>
    <${Loaded} resource=${hits} what="Loading its hits">${(reply) => html`
      <div data-testid="annotation-hits">
        <${Table} caption=${`${reply.total} hit${reply.total === 1 ? "" : "s"}`} rows=${reply.data}
          empty="No hits yet." columns=${[
            { label: "Question", render: (h) => html`<div class="clip">${h.question}</div>` },
            { label: "Answer given", render: (h) => html`<div class="clip">${h.response}</div>` },
            { label: "Similarity", render: (h) => h.score.toFixed(3) },
            { label: "From", render: (h) => SOURCES[h.source] || h.source },
            { label: "When", render: (h) => formatTime(h.created_at) },
          ]} />
      </div>
      <nav class="row pager" aria-label="Pages of hits">
        <${Button} disabled=${page <= 1} onClick=${() => setPage(page - 1)}>Previous page<//>
        <span>Page ${reply.page} of ${Math.max(1, Math.ceil(reply.total / reply.limit))}</span>
        <${Button} disabled=${!reply.has_more} onClick=${() => setPage(page + 1)}>Next page<//>
      </nav>`}<//>`;
}

// --- import and export ---------------------------------------------------------------------------

// A cell as a spreadsheet reads it back: quoted when it holds a comma, a quote or a line break;
// what a spreadsheet would run as a formula (=, +, -, @ first, after any apostrophes) is
// written as text (one ' more), which the import takes off again.
function csvCell(text) {
  const cell = /^'*[=+\-@]/.test(text) ? `'${text}` : text;
  return /[",\r\n]/.test(cell) ? `"${cell.replaceAll('"', '""')}"` : cell;
}

function ImportExport({ app, editor }) {
  const input = useRef(null);
  const [chosen, setChosen] = useState(false);
  const [notice, setNotice] = useState("");
  const [upload, uploading, uploadError] = useAction(async () => {
    const form = new FormData();
    const file = input.current.files[0];
    form.append("file", file, file.name);
    const reply = await (await send("POST", `/apps/${app.id}/annotations/batch-import`, { form })).json();
    input.current.value = "";
    setChosen(false);
    invalidate(`/apps/${app.id}/annotations`);
    setNotice(`Imported ${reply.record_count} annotation${reply.record_count === 1 ? "" : "s"} from ${file.name}.`);
  });
  const [download, downloading, downloadError] = useAction(async () => {
    const { data } = await api.get(`/apps/${app.id}/annotations/export`);
    const lines = ["question,answer", ...data.map((a) => `${csvCell(a.question)},${csvCell(a.answer)}`)];
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([`${lines.join("\r\n")}\r\n`], { type: "text/csv" }));
    link.download = `${app.name} annotations.csv`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
    setNotice(`Exported ${data.length} annotation${data.length === 1 ? "" : "s"}.`);
  });
  return html`<section class="panel" aria-labelledby="import-title">
    <h2 id="import-title">Import and export</h2>
    ${editor && html`<form onSubmit=${(e) => { e.preventDefault(); setNotice(""); upload(); }}>
      <div class="field">
        <label for="import-file">CSV file of annotations</label>
        <input id="import-file" ref=${input} type="file" accept=".csv,text/csv" required aria-describedby="import-hint"
          onChange=${(e) => setChosen(e.currentTarget.files.length > 0)} />
        <small id="import-hint">First row: the header (question,answer); then a question and its answer per row. All rows are imported, or none.</small>
      </div>
      <${ErrorBox} error=${uploadError} />
      <${Button} kind="primary" type="submit" busy=${uploading} disabled=${!chosen}>Import<//>
    </form>`}
    <p><${Button} busy=${downloading} onClick=${() => { setNotice(""); download(); }}>Download all as CSV<//></p>
    <${ErrorBox} error=${downloadError} />
    <${Notice}>${notice}<//>
  </section>`;
}
