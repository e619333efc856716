// One dataset: upload several files at once, each document's indexing followed live (stage,
// segments done of total, the error in words; polled every second while any is unfinished),
// a document's segments (paged, enable/disable; a parent-child document's with their child
// chunks, which an editor changes, deletes or adds) and hit testing (with the child chunks
// that matched).
import { html, useEffect, useLayoutEffect, useRef, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { api, early, invalidate, send, useResource } from "../api.js";
import { href } from "../router.js";
import { atLeast, useSession } from "../session.js";
import { Button, ErrorBox, Field, Loaded, Loading, Notice, PageHeader, Table, formatTime, useAction } from "../ui.js";

// Stages a document does not leave by itself: polling stops once every document is in one.
const SETTLED = new Set(["completed", "error", "paused"]);
const CHUNKING = [
  { value: "text_model", label: "General: segments searched as they are" },
  { value: "hierarchical_model", label: "Parent-child: small child chunks searched, their paragraph returned" },
  { value: "qa_model", label: "Q&A: a chat model writes questions and answers; questions searched" },
];
const PARENT_CHILD = "hierarchical_model";
const QA = "qa_model";
const CHUNKING_HINTS = {
  text_model: "General: each segment is searched as it is.",
  hierarchical_model: "Parent-child: paragraphs cut into lines; a question matches a line and gets its whole paragraph.",
  qa_model: "Q&A: the workspace's default model (else the server's) writes question-and-answer pairs about each chunk; a question matches the questions and gets their answers. One model call per chunk.",
};

// A Q&A segment's question with its answer; any other segment's content.
function SegmentText({ segment }) {
  return segment.answer
    ? html`<div class="segment-text"><strong>Q:</strong> ${segment.content}</div><div class="segment-text"><strong>A:</strong> ${segment.answer}</div>`
    : html`<div class="segment-text">${segment.content}</div>`;
}

const STAGES = {
  waiting: "Waiting", parsing: "Parsing", cleaning: "Cleaning", splitting: "Splitting",
  indexing: "Indexing", completed: "Completed", error: "Error", paused: "Paused",
};

// The batches uploaded from this tab, kept so that a reload goes on showing their progress.
const batches = {
  key: (id) => `conduit.dataset.${id}.batches`,
  load(id) { try { return JSON.parse(sessionStorage.getItem(this.key(id)) || "[]"); } catch { return []; } },
  add(id, batch) { sessionStorage.setItem(this.key(id), JSON.stringify([...this.load(id), batch])); },
  drop(id, batch) { sessionStorage.setItem(this.key(id), JSON.stringify(this.load(id).filter((b) => b !== batch))); },
};

function stageOf(doc, item) {
  if (item) return item.indexing_status;
  return doc.display_status === "paused" ? "paused" : doc.indexing_status;
}

// The documents list and the progress of the batches uploaded here, polled every second
// while any document is unfinished.
function useDocuments(datasetId, page) {
  const path = `/datasets/${datasetId}/documents`;
  // The boot script's reply, when it is here and no upload of this browser is being followed.
  const [first] = useState(() => ({ list: batches.load(datasetId).length ? undefined : early(path, { page, limit: 50 }) }));
  const [state, setState] = useState(() => ({ data: first.list, progress: {}, error: null }));
  const [tick, setTick] = useState(0);
  useLayoutEffect(() => { // at commit, not a frame later (see api.js)
    let live = true;
    let timer = null;
    let moved = tick > 0; // after an upload (a reload), the counts change once it settles
    const load = async (given) => {
      try {
        const list = given || await api.get(path, { page, limit: 50 });
        const progress = {};
        for (const batch of batches.load(datasetId)) {
          const items = (await api.get(`/datasets/${datasetId}/batch/${batch}/indexing-status`)).data;
          for (const item of items) progress[item.id] = item;
          if (items.every((i) => SETTLED.has(i.indexing_status))) batches.drop(datasetId, batch);
        }
        if (!live) return;
        setState((s) => ({ data: list, progress: { ...s.progress, ...progress }, error: null }));
        const moving = list.data.some((d) => !SETTLED.has(stageOf(d, progress[d.id])));
        if (moving) {
          moved = true;
          timer = setTimeout(load, 1000);
        } else if (moved) {
          moved = false;
          invalidate("/datasets"); // indexing ended: its counts changed, here and in the list
        }
      } catch (error) {
        if (live) setState((s) => ({ ...s, error }));
      }
    };
    load(first.list);
    first.list = undefined;
    return () => { live = false; clearTimeout(timer); };
  }, [datasetId, page, tick]);
  return { ...state, reload: () => setTick((t) => t + 1) };
}

function Upload({ dataset, onUploaded }) {
  const input = useRef(null);
  const [count, setCount] = useState(0);
  const [done, setDone] = useState(null);
  // A dataset's documents share one form, chosen with its first upload.
  const fixed = dataset.document_count > 0;
  const [chunking, setChunking] = useState(fixed ? dataset.doc_form : "text_model");
  const [language, setLanguage] = useState("English");
  const [upload, busy, error] = useAction(async () => {
    const files = [...input.current.files];
    const form = new FormData();
    for (const file of files) form.append("file", file, file.name);
    form.append("data", JSON.stringify({
      indexing_technique: dataset.indexing_technique || "high_quality",
      doc_form: chunking,
      ...(chunking === QA ? { doc_language: language.trim() || "English" } : {}),
      process_rule: { mode: chunking === PARENT_CHILD ? "hierarchical" : "automatic" },
    }));
    const reply = await (await send("POST", `/datasets/${dataset.id}/documents`, { form })).json();
    batches.add(dataset.id, reply.batch);
    input.current.value = "";
    setCount(0);
    setDone(`Uploaded ${reply.documents.map((d) => d.name).join(", ")}: indexing follows below.`);
    onUploaded();
  });
  return html`<section class="panel" aria-labelledby="upload-title">
    <h2 id="upload-title">Upload documents</h2>
    <form onSubmit=${(e) => { e.preventDefault(); setDone(null); upload(); }}>
      <div class="field">
        <label for="upload-files">Files (several at once)</label>
        <input id="upload-files" ref=${input} type="file" multiple required aria-describedby="upload-hint"
          onChange=${(e) => setCount(e.currentTarget.files.length)} />
        <small id="upload-hint">Text, Markdown, PDF, Word, HTML, CSV and more; all files of one upload are accepted or none.</small>
      </div>
      <${Field} label="Chunking" as="select" options=${CHUNKING} value=${chunking} onInput=${setChunking} disabled=${fixed}
        hint=${fixed ? "Every document of a dataset is chunked the same way (chosen with its first upload)." : CHUNKING_HINTS[chunking]} />
      ${chunking === QA && html`<${Field} label="Language of the questions and answers" value=${language} onInput=${setLanguage}
        maxlength="32" hint="A language name, e.g. English, French, Japanese" />`}
      <${ErrorBox} error=${error} />
      <${Notice}>${done}<//>
      <${Button} kind="primary" type="submit" busy=${busy} disabled=${count === 0}>
        ${count > 1 ? `Upload ${count} files` : "Upload"}
      <//>
    </form>
  </section>`;
}

function Progress({ doc, item }) {
  const stage = stageOf(doc, item);
  const done = item ? item.completed_segments : doc.segment_count;
  const total = item ? item.total_segments : doc.segment_count;
  const error = (item && item.error) || doc.error;
  const delay = item && item.delay_reason;
  // While splitting, a Q&A document counts the chunks the model has written pairs for.
  const unit = stage === "splitting" && total > 0 ? "chunks answered" : "segments";
  return html`<div class="progress">
    <span class=${`status ${stage}`}>${STAGES[stage] || stage}</span>
    ${stage !== "error" && html` <span class="muted">${done ?? 0} of ${total ?? 0} ${unit}</span>`}
    ${stage !== "completed" && stage !== "error" && total > 0 && html`
      <progress max=${total} value=${done} aria-label=${`${doc.name}: ${done} of ${total} ${unit}`}></progress>`}
    ${stage === "error" && error && html`<div class="reason" role="note">Reason: ${error}</div>`}
    ${delay && html`<div class="muted">Waiting: ${delay}</div>`}
  </div>`;
}

function Documents({ dataset, docs, selected, editor, page, setPage }) {
  const [act, busy, error] = useAction(async (doc, action) => {
    if (action === "retry") await api.post(`/datasets/${dataset.id}/retry`, { document_ids: [doc.id] });
    else await api.patch(`/datasets/${dataset.id}/documents/${doc.id}/processing/${action}`);
    docs.reload();
  });
  return html`<section aria-labelledby="documents-title">
    <h2 id="documents-title">Documents</h2>
    <${ErrorBox} error=${error || docs.error} onRetry=${docs.error ? docs.reload : undefined} />
    ${docs.data === undefined ? !docs.error && html`<${Loading} what="Loading the documents" />` : html`
      <div aria-live="polite">
        <${Table} caption=${`${docs.data.total} document${docs.data.total === 1 ? "" : "s"}`}
          empty="No document yet: upload files above." rows=${docs.data.data}
          columns=${[
            { label: "Name", render: (d) => html`<a href=${href(`/datasets/${dataset.id}?document=${d.id}`)} aria-current=${d.id === selected ? "true" : undefined}>${d.name}</a>` },
            { label: "Indexing", render: (d) => html`<${Progress} doc=${d} item=${docs.progress[d.id]} />` },
            { label: "Words", render: (d) => d.word_count ?? "" },
            { label: "Uploaded", render: (d) => formatTime(d.created_at) },
            { label: "Actions", render: (d) => {
              if (!editor) return "";
              const stage = stageOf(d, docs.progress[d.id]);
              if (stage === "error") return html`<${Button} busy=${busy} onClick=${() => act(d, "retry")} aria-label=${`Retry ${d.name}`}>Retry<//>`;
              if (stage === "paused") return html`<${Button} busy=${busy} onClick=${() => act(d, "resume")} aria-label=${`Resume ${d.name}`}>Resume<//>`;
              if (stage !== "completed") return html`<${Button} busy=${busy} onClick=${() => act(d, "pause")} aria-label=${`Pause ${d.name}`}>Pause<//>`;
              return "";
            } },
          ]} />
      </div>
      <div class="row">
        ${page > 1 && html`<${Button} onClick=${() => setPage(page - 1)}>Previous documents<//>`}
        ${docs.data.has_more && html`<${Button} onClick=${() => setPage(page + 1)}>Next documents<//>`}
      </div>`}
  </section>`;
}

// A parent-child segment's child chunks (what a search compares with the query): an editor
// changes one's text, deletes one (after a second click), or adds one by hand; each is embedded
// on the server before the reply, so a search finds it at once.
function Children({ path, segment, editor }) {
  const base = `${path}/segments/${segment.id}/child_chunks`;
  const [editing, setEditing] = useState(null); // the child chunk being changed
  const [text, setText] = useState("");
  const [doomed, setDoomed] = useState(null); // the child chunk asked to be deleted
  const [adding, setAdding] = useState("");
  const [saved, setSaved] = useState({}); // id → text saved, shown until the list is read again
  useEffect(() => setSaved({}), [segment.child_chunks]); // the list read again: it is shown
  const done = () => invalidate(`${path}/segments`);
  const [save, saving, saveError] = useAction(async (chunk) => {
    const reply = await api.patch(`${base}/${chunk.id}`, { content: text });
    setSaved({ ...saved, [chunk.id]: reply.data.content });
    setEditing((current) => (current === chunk.id ? null : current));
    done();
  });
  const [remove, removing, removeError] = useAction(async (chunk) => {
    await api.delete(`${base}/${chunk.id}`);
    setDoomed(null);
    done();
  });
  const [add, busyAdding, addError] = useAction(async () => {
    const sent = adding;
    await api.post(base, { content: sent });
    setAdding((current) => (current === sent ? "" : current));
    done();
  });
  const count = segment.child_chunks.length;
  const of = (c) => `child chunk ${c.position} of segment ${segment.position}`;
  const shown = (c) => saved[c.id] ?? c.content;
  return html`<details class="children">
    <summary>${count} child chunk${count === 1 ? "" : "s"}</summary>
    ${count === 0
      ? html`<p class="muted">No child chunks.</p>`
      : html`<ol aria-label=${`Child chunks of segment ${segment.position}`}>
      ${segment.child_chunks.map((c) => html`<li key=${c.id} value=${c.position}>${editing === c.id
        ? html`<form onSubmit=${(e) => { e.preventDefault(); save(c); }}>
            <${Field} label=${`Text of ${of(c)}`} as="textarea" rows="2" value=${text} onInput=${setText} required />
            <div class="row">
              <${Button} kind="primary" type="submit" busy=${saving} aria-label=${`Save ${of(c)}`}>Save<//>
              <${Button} type="button" onClick=${() => setEditing(null)} aria-label=${`Cancel the change of ${of(c)}`}>Cancel<//>
            </div>
          </form>`
        : html`<span class="child-text">${shown(c)}</span>${(c.type === "customized" || saved[c.id] !== undefined) && html` <span class="muted">(edited)</span>`}
          ${editor && (doomed === c.id
            ? html` <span role="group" aria-label=${`Delete ${of(c)}?`}>Delete it?
                <${Button} kind="danger" busy=${removing} onClick=${() => remove(c)} aria-label=${`Yes, delete ${of(c)}`}>Yes, delete<//>
                <${Button} onClick=${() => setDoomed(null)} aria-label=${`Keep ${of(c)}`}>Keep<//></span>`
            : html` <${Button} onClick=${() => { setEditing(c.id); setText(shown(c)); }} aria-label=${`Edit ${of(c)}`}>Edit<//>
                <${Button} kind="danger" onClick=${() => setDoomed(c.id)} aria-label=${`Delete ${of(c)}`}>Delete<//>`)}`}
      </li>`)}
    </ol>`}
    ${editor && html`<form class="row" onSubmit=${(e) => { e.preventDefault(); add(); }}>
      <${Field} label=${`New child chunk of segment ${segment.position}`} value=${adding} onInput=${setAdding} />
      <div class="field"><${Button} type="submit" busy=${busyAdding} disabled=${!adding.trim()}
        aria-label=${`Add child chunk to segment ${segment.position}`}>Add child chunk<//></div>
    </form>`}
    <${ErrorBox} error=${saveError || removeError || addError} />
  </details>`;
}

function Segments({ dataset, documentId, editor }) {
  const [page, setPage] = useState(1);
  const path = `/datasets/${dataset.id}/documents/${documentId}`;
  const doc = useResource(path);
  const segments = useResource(`${path}/segments`, { page, limit: 10 });
  const [toggle, busy, error] = useAction(async (segment) => {
    await api.patch(`${path}/segment/${segment.enabled ? "disable" : "enable"}`, undefined, { query: { segment_id: segment.id } });
    invalidate(`${path}/segments`);
  });
  const name = doc.data ? doc.data.name : "the document";
  return html`<section class="panel" aria-labelledby="segments-title">
    <div class="page-header">
      <h2 id="segments-title">Segments of ${name}</h2>
      <a href=${href(`/datasets/${dataset.id}`)}>Close segments</a>
    </div>
    <${ErrorBox} error=${error} />
    <${Loaded} resource=${segments} what="Loading the segments">${(data) => html`
      <${Table} caption=${`${data.total} segment${data.total === 1 ? "" : "s"}`} empty="No segment: the document has not been split yet." rows=${data.data}
        columns=${[
          { label: "#", render: (s) => s.position },
          { label: "Content", render: (s) => html`<${SegmentText} segment=${s} />
            ${(s.child_chunks.length > 0 || dataset.doc_form === PARENT_CHILD) && html`<${Children} key=${s.id} path=${path} segment=${s} editor=${editor} />`}` },
          { label: "Words", render: (s) => s.word_count },
          { label: "Hits", render: (s) => s.hit_count },
          { label: "State", render: (s) => (s.enabled ? "Enabled" : "Disabled") },
          { label: "Actions", render: (s) => editor && html`<${Button} busy=${busy} onClick=${() => toggle(s)} aria-label=${`${s.enabled ? "Disable" : "Enable"} segment ${s.position}`}>${s.enabled ? "Disable" : "Enable"}<//>` },
        ]} />
      <div class="row">
        ${page > 1 && html`<${Button} onClick=${() => setPage(page - 1)}>Previous segments<//>`}
        ${data.has_more && html`<${Button} onClick=${() => setPage(page + 1)}>Next segments<//>`}
      </div>`}<//>
  </section>`;
}

// Hit testing: a dataset's own segments (`hit-testing`), or what an external dataset's
// service returns (`external-hit-testing`).
function HitTesting({ dataset }) {
  const external = dataset.provider === "external";
  const [query, setQuery] = useState("");
  const [result, setResult] = useState(null);
  const [search, busy, error] = useAction(async () => {
    setResult(await api.post(`/datasets/${dataset.id}/${external ? "external-hit-testing" : "hit-testing"}`, { query }));
  });
  return html`<section class="panel" aria-labelledby="hit-title">
    <h2 id="hit-title">Hit testing</h2>
    <form onSubmit=${(e) => { e.preventDefault(); search(); }}>
      <${Field} label="Query" as="textarea" rows="2" value=${query} onInput=${setQuery}
        hint=${external ? "Sent to the external knowledge API: the passages it returns, best first." : "What a user might ask: the segments retrieval would find, best first."} />
      <${ErrorBox} error=${error} />
      <${Button} kind="primary" type="submit" busy=${busy}>Test retrieval<//>
    </form>
    ${result && html`<div aria-live="polite">
      ${result.records.length === 0 ? html`<p class="empty">${external ? "The external knowledge API found nothing for" : "No segment matches"} “${result.query.content}”.</p>` : external ? html`
      <ol class="hits" aria-label="Retrieved passages">
        ${result.records.map((r) => html`<li class="hit">
          <div class="meta"><strong>Score ${r.score.toFixed(3)}</strong> · ${r.title || "untitled"}</div>
          <div class="segment-text">${r.content}</div>
        </li>`)}
      </ol>` : html`
      <ol class="hits" aria-label="Retrieved segments">
        ${result.records.map((r) => html`<li class="hit">
          <div class="meta"><strong>Score ${r.score.toFixed(3)}</strong> · ${r.segment.document.name} · segment ${r.segment.position}</div>
          <${SegmentText} segment=${r.segment} />
          ${r.child_chunks.length > 0 && html`<ul class="matched" aria-label=${`Child chunks that matched in segment ${r.segment.position}`}>
            ${r.child_chunks.map((c) => html`<li key=${c.id}><strong>${c.score.toFixed(3)}</strong> ${c.content}</li>`)}
          </ul>`}
        </li>`)}
      </ol>`}
    </div>`}
  </section>`;
}

export default function DatasetPage({ params, query }) {
  const session = useSession();
  const editor = atLeast(session, "editor");
  const id = params.datasetId;
  const dataset = useResource(`/datasets/${id}`);
  const [page, setPage] = useState(1);
  const docs = useDocuments(id, page);
  return html`<${Loaded} resource=${dataset} what="Loading the dataset">${({ data }) => html`
    <nav class="tabs" aria-label="Dataset"><a class="back" href=${href("/datasets")}>← Knowledge</a></nav>
    <${PageHeader} title=${data.name}>
      <span class="muted">${data.provider === "external" ? "external knowledge base" : html`${data.document_count} document${data.document_count === 1 ? "" : "s"} · ${data.word_count} words · ${data.indexing_technique === "economy" ? "economy" : "high quality"} indexing${data.doc_form === PARENT_CHILD ? " · parent-child chunks" : data.doc_form === QA ? " · Q&A chunks" : ""}`}</span>
    <//>
    ${data.description && html`<p>${data.description}</p>`}
    ${data.provider === "external" ? html`
    <section class="panel" aria-labelledby="source-title">
      <h2 id="source-title">External knowledge base</h2>
      <dl class="facts">
        <dt>API</dt><dd>${data.external_knowledge_info.external_knowledge_api_name}</dd>
        <dt>Endpoint</dt><dd><code>${data.external_knowledge_info.external_knowledge_api_endpoint}</code></dd>
        <dt>Knowledge ID</dt><dd><code>${data.external_knowledge_info.external_knowledge_id}</code></dd>
        <dt>Top K</dt><dd>${data.external_retrieval_model.top_k}</dd>
        <dt>Score threshold</dt><dd>${data.external_retrieval_model.score_threshold_enabled ? data.external_retrieval_model.score_threshold : "off"}</dd>
      </dl>
      <p class="muted">Its documents live in the external service: searches and apps ask it.</p>
    </section>
    <${HitTesting} dataset=${data} />` : html`
    ${editor && html`<${Upload} dataset=${data} onUploaded=${docs.reload} />`}
    <${Documents} dataset=${data} docs=${docs} selected=${query.document} editor=${editor} page=${page} setPage=${setPage} />
    ${query.document && html`<${Segments} key=${query.document} dataset=${data} documentId=${query.document} editor=${editor} />`}
    <${HitTesting} dataset=${data} />`}`}<//>`;
}
