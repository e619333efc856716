// A workflow or chatflow app: its draft graph (boxes at their DSL positions, SVG edges, a text
// list beside it), a draft run whose nodes light up as their events arrive (running,
// succeeded, failed, skipped, with their time), Stop, the outputs (a reload mid-run follows the
// same run again), an agent node's rounds (the tools it used, their inputs and answers), the
// form a paused run waits on (answering it follows the resumed run); run
// history with each
// run's node executions; the app as Dify's DSL (export, import as a new app or this draft).
import { html, useEffect, useLayoutEffect, useRef, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { api, invalidate, send, useResource } from "../api.js";
import { AppPage } from "../app_nav.js";
import { navigate } from "../router.js";
import { HumanForm } from "../human_form.js";
import { pending, readEvents } from "../sse.js";
import { Thoughts, withAgentLog } from "../thoughts.js";
import { Button, Dialog, ErrorBox, Field, Loaded, Notice, PageHeader, Table, formatMs, formatTime, useAction } from "../ui.js";

const BOX_W = 190;
const BOX_H = 64;
const STATUS_WORDS = {
  running: "running", succeeded: "succeeded", failed: "failed", exception: "failed (handled)",
  stopped: "stopped", skipped: "skipped", retry: "retrying", paused: "waiting for an answer",
};

const seconds = (s) => (s === null || s === undefined ? "" : formatMs(s * 1000));

// Where each node's box goes: its DSL position when every node has one, else columns by the
// longest path from the start (rows in the order the graph lists them).
export function layout(graph) {
  const nodes = (graph && graph.nodes) || [];
  const edges = (graph && graph.edges) || [];
  const placed = {};
  if (nodes.length && nodes.every((n) => n.position && Number.isFinite(n.position.x) && Number.isFinite(n.position.y))) {
    for (const n of nodes) placed[n.id] = { x: n.position.x, y: n.position.y };
  } else {
    const depth = Object.fromEntries(nodes.map((n) => [n.id, 0]));
    for (let pass = 0; pass < nodes.length; pass += 1) {
      let moved = false;
      for (const e of edges) {
        if (e.source in depth && e.target in depth && depth[e.target] < depth[e.source] + 1 && depth[e.source] < nodes.length) {
          depth[e.target] = depth[e.source] + 1;
          moved = true;
        }
      }
      if (!moved) break;
    }
    const rows = {};
    for (const n of nodes) {
      const column = depth[n.id];
      rows[column] = (rows[column] || 0) + 1;
      placed[n.id] = { x: column * (BOX_W + 70), y: (rows[column] - 1) * (BOX_H + 36) };
    }
  }
  const xs = Object.values(placed).map((p) => p.x);
  const ys = Object.values(placed).map((p) => p.y);
  const left = Math.min(...xs);
  const top = Math.min(...ys);
  for (const p of Object.values(placed)) { p.x = p.x - left + 12; p.y = p.y - top + 12; }
  const width = Math.max(BOX_W, ...Object.values(placed).map((p) => p.x + BOX_W)) + 12;
  const height = Math.max(BOX_H, ...Object.values(placed).map((p) => p.y + BOX_H)) + 12;
  return { placed, width, height };
}

const titleOf = (node) => (node.data && node.data.title) || node.id;
const typeOf = (node) => (node.data && node.data.type) || node.type || "node";

function statusText(state) {
  if (!state) return "not run";
  const words = STATUS_WORDS[state.status] || state.status;
  return state.elapsed !== undefined && state.elapsed !== null ? `${words}, ${seconds(state.elapsed)}` : words;
}

function Graph({ graph, states }) {
  const { placed, width, height } = layout(graph);
  const nodes = graph.nodes || [];
  const edges = (graph.edges || []).filter((e) => placed[e.source] && placed[e.target]);
  const byId = Object.fromEntries(nodes.map((n) => [n.id, n]));
  return html`<div class="graph-wrap">
    <div class="graph" style=${`width:${width}px;height:${height}px`}>
      <svg class="edges" width=${width} height=${height} aria-hidden="true" focusable="false">
        <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
          <path d="M 0 0 L 10 5 L 0 10 z" fill="#6b7686" /></marker></defs>
        ${edges.map((e) => {
          const a = placed[e.source];
          const b = placed[e.target];
          const x1 = a.x + BOX_W; const y1 = a.y + BOX_H / 2; const x2 = b.x; const y2 = b.y + BOX_H / 2;
          const bend = Math.max(30, Math.abs(x2 - x1) / 2);
          const done = states[e.source] && states[e.source].status === "succeeded" && states[e.target];
          return html`<path key=${e.id || `${e.source}-${e.target}`} class=${`edge${done ? " taken" : ""}`}
            d=${`M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`} marker-end="url(#arrow)" />`;
        })}
      </svg>
      ${nodes.map((n) => {
        const p = placed[n.id];
        const state = states[n.id];
        return html`<div key=${n.id} class=${`node ${state ? state.status : "idle"}`} tabindex="0" role="group"
          data-node=${n.id} aria-label=${`${titleOf(n)} (${typeOf(n)}): ${statusText(state)}`}
          style=${`left:${p.x}px;top:${p.y}px;width:${BOX_W}px;height:${BOX_H}px`}>
          <div class="node-title">${titleOf(n)}</div>
          <div class="node-type">${typeOf(n)}</div>
          <div class="node-state">${statusText(state)}</div>
        </div>`;
      })}
    </div>
    <h3 id="node-list-title">Nodes as a list</h3>
    <ol class="node-list" aria-labelledby="node-list-title">
      ${nodes.map((n) => {
        const next = edges.filter((e) => e.source === n.id).map((e) => titleOf(byId[e.target] || { id: e.target }));
        const state = states[n.id];
        return html`<li key=${n.id} data-node=${n.id}>
          <strong>${titleOf(n)}</strong> <span class="muted">(${typeOf(n)})</span>:
          <span class=${`status ${state ? state.status : "idle"}`}>${statusText(state)}</span>
          ${next.length > 0 && html` → ${next.join(", ")}`}
          ${state && state.error && html`<div class="reason">Error: ${state.error}</div>`}
        </li>`;
      })}
    </ol>
  </div>`;
}

// The start node's form: one labelled field per variable.
function StartForm({ variables, values, setValues }) {
  const set = (name) => (value) => setValues({ ...values, [name]: value });
  return variables.map((v) => {
    const label = `${v.label || v.variable}${v.required ? " (required)" : ""}`;
    const value = values[v.variable];
    switch (v.type) {
      case "paragraph":
        return html`<${Field} key=${v.variable} label=${label} as="textarea" rows="3" value=${value} onInput=${set(v.variable)} />`;
      case "select":
        return html`<${Field} key=${v.variable} label=${label} as="select" value=${value ?? ""} onInput=${set(v.variable)}
          options=${[{ value: "", label: "—" }, ...(v.options || []).map((o) => ({ value: o, label: o }))]} />`;
      case "number":
        return html`<${Field} key=${v.variable} label=${label} type="number" step="any" value=${value} onInput=${set(v.variable)} />`;
      case "checkbox":
        return html`<${Field} key=${v.variable} label=${label} type="checkbox" value=${value} onInput=${set(v.variable)} />`;
      case "json_object":
        return html`<${Field} key=${v.variable} label=${label} as="textarea" rows="3" value=${value} onInput=${set(v.variable)} hint="A JSON object." />`;
      case "file":
      case "file-list":
        return html`<p key=${v.variable} class="muted">${label}: file inputs are given through the Service API (/v1/files/upload).</p>`;
      default:
        return html`<${Field} key=${v.variable} label=${label} value=${value} maxlength=${v.max_length || undefined} onInput=${set(v.variable)} />`;
    }
  });
}

function inputsOf(variables, values) {
  const inputs = {};
  for (const v of variables) {
    const raw = values[v.variable];
    if (raw === undefined || raw === "") continue;
    if (v.type === "number") inputs[v.variable] = Number(raw);
    else if (v.type === "json_object") {
      try { inputs[v.variable] = JSON.parse(raw); } catch (e) {
        throw new Error(`${v.label || v.variable} is not valid JSON: ${e.message}`);
      }
    } else inputs[v.variable] = raw;
  }
  return inputs;
}

function Run({ app, graph, run, setRun }) {
  const start = (graph.nodes || []).find((n) => typeOf(n) === "start");
  const variables = (start && start.data && start.data.variables) || [];
  const [values, setValues] = useState({});
  const [query, setQuery] = useState("");
  const chat = app.mode === "advanced-chat";
  const scope = `console.workflow.${app.id}`;
  const controller = useRef(null);
  // Reads a draft run's events into the run shown, from its first one: `open(signal)` sends
  // the run, or asks for the events of one a reload cut off. The run stays in sessionStorage
  // until its stream ends, so that a reload (or a visit back) follows it again.
  // `base`: what a resumed run keeps of the run shown (its nodes' states, the forms answered).
  const [go, busy, error, setError] = useAction(async (open, base = {}) => {
    controller.current = new AbortController();
    let current = { status: "running", states: {}, text: "", taskId: null, runId: null, outputs: null, error: null, elapsed: null, forms: [], answered: [], ...base };
    const update = (change) => { current = { ...current, ...change }; setRun(current); };
    update({});
    const response = await open(controller.current.signal);
    const runId = response.headers.get("x-workflow-run-id") || current.runId;
    const taskId = response.headers.get("x-task-id");
    if (runId) update({ runId });
    if (runId || taskId) pending.save(scope, { runId, taskId });
    await readEvents(response, (event) => {
      const data = event.data || {};
      if (event.task_id && !current.taskId) update({ taskId: event.task_id });
      if (event.workflow_run_id && !current.runId) {
        update({ runId: event.workflow_run_id });
        pending.save(scope, { runId: event.workflow_run_id, taskId: current.taskId });
      }
      switch (event.event) {
        case "workflow_started": update({ runId: data.id || event.workflow_run_id || current.runId }); break;
        case "node_started":
          update({ states: { ...current.states, [data.node_id]: { status: "running" } } }); break;
        case "node_finished": case "node_retry":
          update({ states: { ...current.states, [data.node_id]: {
            status: event.event === "node_retry" ? "retry" : data.status, elapsed: data.elapsed_time, error: data.error } } });
          break;
        case "text_chunk": update({ text: current.text + (data.text || "") }); break;
        case "agent_log": update({ thoughts: withAgentLog(current.thoughts, data) }); break;
        case "message": update({ text: current.text + (event.answer || "") }); break;
        case "human_input_required": update({ forms: [...current.forms.filter((f) => f.node_id !== data.node_id), data] }); break;
        case "workflow_paused": {
          const states = { ...current.states };
          for (const id of data.paused_nodes || []) states[id] = { status: "paused" };
          update({ status: "paused", states, elapsed: data.elapsed_time });
          break;
        }
        case "workflow_finished": {
          const states = { ...current.states };
          for (const n of graph.nodes || []) if (!states[n.id] && data.status === "succeeded") states[n.id] = { status: "skipped" };
          update({ status: data.status, outputs: data.outputs, error: data.error, elapsed: data.elapsed_time, states });
          break;
        }
        case "error": update({ status: current.status === "running" ? "failed" : current.status, error: event.message }); break;
        default: break;
      }
    });
    if (current.status !== "paused") pending.clear(scope); // (a paused run is followed again)
    if (current.status === "running") update({ status: "stopped" });
    invalidate(`/apps/${app.id}/workflow-runs`);
  });
  const begin = () => {
    const body = { inputs: inputsOf(variables, values), response_mode: "streaming" };
    if (chat) body.query = query;
    const path = chat ? `/apps/${app.id}/advanced-chat/workflows/draft/run` : `/apps/${app.id}/workflows/draft/run`;
    go((signal) => send("POST", path, { body, signal }));
  };
  useLayoutEffect(() => { // a run a reload cut off: followed again from its first event
    const saved = pending.load(scope);
    if (!saved || !(saved.runId || saved.taskId)) return;
    const path = saved.runId
      ? `/apps/${app.id}/workflow-runs/${saved.runId}/events`
      : `/apps/${app.id}/chat-messages/${saved.taskId}/events`;
    go(async (signal) => {
      try {
        return await send("GET", path, { signal });
      } catch (e) {
        pending.clear(scope); // gone (past its events' retention) or not this account's
        throw e;
      }
    });
  }, []);
  // An answered form resumes the run: its events are followed again (the resumed execution's),
  // the nodes that ran before the pause keeping their states.
  const resume = (token) => {
    const states = Object.fromEntries(Object.entries(run.states || {}).filter(([, s]) => s.status !== "paused"));
    const answered = [...(run.answered || []), ...(token ? [token] : [])];
    go((signal) => send("GET", `/apps/${app.id}/workflow-runs/${run.runId}/events`, { signal }), { runId: run.runId, states, answered, text: run.text });
  };
  const open = run && run.status === "paused" ? (run.forms || []).filter((f) => !(run.answered || []).includes(f.form_token)) : [];
  // Paused with every form answered: an answer given while the run still ran is taken up by
  // the server's sweep within seconds; the run is followed again then.
  useEffect(() => {
    if (!run || run.status !== "paused" || busy || open.length || !(run.forms || []).length) return undefined;
    const later = setTimeout(() => resume(null), 2000);
    return () => clearTimeout(later);
  }, [run, busy]);
  const [stop, stopping, stopError] = useAction(async () => {
    await api.post(`/apps/${app.id}/workflow-runs/tasks/${run.taskId}/stop`);
    if (run.status === "paused" && !busy) resume(null); // its stored end: stopped
  });
  useEffect(() => () => controller.current && controller.current.abort(), []);
  return html`<section class="panel" aria-labelledby="run-title">
    <h2 id="run-title">Run the draft</h2>
    <form onSubmit=${(e) => { e.preventDefault(); setError(null); begin(); }}>
      ${variables.length === 0 && !chat && html`<p class="muted">The start node asks for no input.</p>`}
      <${StartForm} variables=${variables} values=${values} setValues=${setValues} />
      ${chat && html`<${Field} label="Query" as="textarea" rows="2" required value=${query} onInput=${setQuery} />`}
      <${ErrorBox} error=${error || stopError} />
      <div class="row">
        <${Button} kind="primary" type="submit" busy=${busy}>Run<//>
        ${(busy || (run && run.status === "paused")) && run && run.taskId && html`<${Button} kind="danger" type="button" busy=${stopping} onClick=${stop}>Stop<//>`}
      </div>
    </form>
    ${run && html`<div class="run-result" aria-live="polite">
      <p><strong>Run: </strong><span class=${`status ${run.status}`}>${run.status}</span>
        ${run.elapsed !== null && run.elapsed !== undefined && html` in ${seconds(run.elapsed)}`}</p>
      ${run.error && html`<div class="error" role="alert">${run.error}</div>`}
      ${run.thoughts && run.thoughts.length > 0 && html`<h3>Agent</h3><${Thoughts} thoughts=${run.thoughts} />`}
      ${run.text && html`<h3>Answer</h3><div class="bubble assistant">${run.text}</div>`}
      ${run.outputs && run.status !== "paused" && html`<h3>Outputs</h3><pre tabindex="0" aria-label="Outputs">${JSON.stringify(run.outputs, null, 2)}</pre>`}
      ${run.status === "paused" && !busy && !open.length && html`<p class="muted">Answered: the run goes on in a moment.</p>`}
    </div>`}
    ${run && run.status === "paused" && !busy && open.map((form) => html`<${HumanForm} key=${form.form_token} form=${form}
      submit=${(action, inputs) => api.post(`/form/human_input/${form.form_token}`, { inputs, action })}
      onAnswered=${() => resume(form.form_token)} />`)}
  </section>`;
}

function History({ app, onShow }) {
  const runs = useResource(`/apps/${app.id}/workflow-runs`, { limit: 20 });
  const [picked, setPicked] = useState(null);
  const [open, busy, error] = useAction(async (run) => {
    const executions = await api.get(`/apps/${app.id}/workflow-runs/${run.id}/node-executions`);
    setPicked({ run, executions: executions.data });
    onShow(Object.fromEntries(executions.data.map((e) => [e.node_id, { status: e.status, elapsed: e.elapsed_time, error: e.error }])));
  });
  return html`<section aria-labelledby="history-title">
    <h2 id="history-title">Run history</h2>
    <${Loaded} resource=${runs} what="Loading the runs">${(data) => html`
      <${Table} empty="No run yet." rows=${data.data} columns=${[
        { label: "Started", render: (r) => formatTime(r.created_at) },
        { label: "Status", render: (r) => html`<span class=${`status ${r.status}`}>${r.status}</span>` },
        { label: "Time", render: (r) => seconds(r.elapsed_time) },
        { label: "Steps", render: (r) => r.total_steps },
        { label: "By", render: (r) => (r.created_by_account && r.created_by_account.email) || (r.created_by_end_user && r.created_by_end_user.session_id) || "" },
        { label: "Nodes", render: (r) => html`<${Button} busy=${busy} onClick=${() => open(r)} aria-label=${`Show nodes of the run started ${formatTime(r.created_at)}`}>Show nodes<//>` },
      ]} />`}<//>
    <${ErrorBox} error=${error} />
    ${picked && html`<div class="panel">
      <h3>Node executions of the run started ${formatTime(picked.run.created_at)}</h3>
      <${Table} rows=${picked.executions} columns=${[
        { label: "#", render: (e) => e.index },
        { label: "Node", render: (e) => `${e.title} (${e.node_type})` },
        { label: "Status", render: (e) => html`<span class=${`status ${e.status}`}>${e.status}</span>` },
        { label: "Time", render: (e) => seconds(e.elapsed_time) },
        { label: "Error", render: (e) => e.error || "" },
      ]} />
    </div>`}
  </section>`;
}

function Export({ app, open, onClose }) {
  const [dsl, setDsl] = useState(null);
  const [load, busy, error] = useAction(async () => setDsl((await api.get(`/apps/${app.id}/export`)).data));
  useEffect(() => { if (open) { setDsl(null); load(); } }, [open]);
  const link = dsl ? URL.createObjectURL(new Blob([dsl], { type: "application/x-yaml" })) : null;
  useEffect(() => () => link && URL.revokeObjectURL(link), [link]);
  return html`<${Dialog} title="Export DSL" open=${open} onClose=${onClose}>
    <${ErrorBox} error=${error} />
    ${busy && html`<p class="loading" role="status">Exporting…</p>`}
    ${dsl && html`<${Field} label="DSL (YAML)" as="textarea" rows="14" readonly value=${dsl} />`}
    <div class="row">
      ${link && html`<a class="button primary" href=${link} download=${`${app.name}.yml`}>Download ${app.name}.yml</a>`}
      <${Button} onClick=${onClose}>Close<//>
    </div>
  <//>`;
}

function Import({ app, open, onClose, onImported }) {
  const [text, setText] = useState("");
  const [target, setTarget] = useState("new");
  const [result, setResult] = useState(null);
  const reply = async (response) => {
    const body = await response.json();
    setResult(body);
    if (body.status === "completed" || body.status === "completed-with-warnings") {
      invalidate(`/apps/${body.app_id}`);
      invalidate("/apps");
      if (body.app_id !== app.id) navigate(`/apps/${body.app_id}/workflow`);
      else onImported();
    }
  };
  const [submit, busy, error, setError] = useAction(async () => {
    setResult(null);
    const body = { mode: "yaml-content", yaml_content: text };
    if (target === "this") body.app_id = app.id;
    await reply(await send("POST", "/apps/imports", { body }));
  });
  const [confirm, confirming, confirmError] = useAction(async () => {
    await reply(await send("POST", `/apps/imports/${result.id}/confirm`));
  });
  const readFile = async (e) => {
    const file = e.currentTarget.files[0];
    if (file) setText(await file.text());
  };
  return html`<${Dialog} title="Import DSL" open=${open} onClose=${onClose}>
    <form onSubmit=${(e) => { e.preventDefault(); setError(null); submit(); }}>
      <div class="field">
        <label for="dsl-file">A DSL file</label>
        <input id="dsl-file" type="file" accept=".yml,.yaml,text/yaml" onChange=${readFile} />
      </div>
      <${Field} label="DSL (YAML)" as="textarea" rows="10" required value=${text} onInput=${setText} />
      <${Field} label="Import as" as="select" value=${target} onInput=${setTarget} options=${[
        { value: "new", label: "A new app" }, { value: "this", label: `The draft of ${app.name} (replaced)` }]} />
      <${ErrorBox} error=${error || confirmError} />
      ${result && result.status === "pending" && html`<div class="notice" role="status">
        This DSL is version ${result.imported_dsl_version}; this server writes ${result.current_dsl_version}. Import it anyway?
        <${Button} type="button" busy=${confirming} onClick=${confirm}>Confirm import<//>
      </div>`}
      ${result && result.status === "completed-with-warnings" && html`<div class="notice" role="status">
        Imported, with warnings: <ul>${result.warnings.map((w) => html`<li>${w}</li>`)}</ul></div>`}
      ${result && result.status === "completed" && html`<${Notice}>Imported.<//>`}
      <div class="row">
        <${Button} kind="primary" type="submit" busy=${busy}>Import<//>
        <${Button} type="button" onClick=${onClose}>Close<//>
      </div>
    </form>
  <//>`;
}

function Workflow({ app }) {
  const draft = useResource(`/apps/${app.id}/workflows/draft`);
  const [run, setRun] = useState(null);
  const [shown, setShown] = useState(null); // a past run's node states
  const [exporting, setExporting] = useState(false);
  const [importing, setImporting] = useState(false);
  const states = run ? run.states : shown || {};
  return html`<div class="workflow-page">
    <${PageHeader} title=${`Workflow of ${app.name}`}>
      <${Button} onClick=${() => setExporting(true)}>Export DSL<//>
      <${Button} onClick=${() => setImporting(true)}>Import DSL<//>
    <//>
    ${draft.error && draft.error.code === "draft_workflow_not_exist"
      ? html`<p class="empty">The draft has no node yet: import a DSL (Import DSL above).</p>`
      : html`<${Loaded} resource=${draft} what="Loading the draft">${(data) => html`<div>
      <section aria-labelledby="graph-title">
        <h2 id="graph-title">Graph</h2>
        ${(data.graph.nodes || []).length === 0
          ? html`<p class="empty">The draft has no node yet: import a DSL.</p>`
          : html`<${Graph} graph=${data.graph} states=${states} />`}
      </section>
      <${Run} app=${app} graph=${data.graph} run=${run} setRun=${(r) => { setShown(null); setRun(r); }} />
    </div>`}<//>`}
    <${History} app=${app} onShow=${(s) => { setRun(null); setShown(s); }} />
    <${Export} app=${app} open=${exporting} onClose=${() => setExporting(false)} />
    <${Import} app=${app} open=${importing} onClose=${() => setImporting(false)}
      onImported=${() => { setImporting(false); setRun(null); setShown(null); draft.reload(); }} />
  </div>`;
}

export default function WorkflowPage({ params }) {
  return html`<${AppPage} appId=${params.appId} current="/workflow">${(app) => html`<${Workflow} app=${app} />`}<//>`;
}
