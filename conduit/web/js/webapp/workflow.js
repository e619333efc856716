// The workflow page of a site: the start form, Run, the streamed text (`text_chunk`), an agent
// node's tool calls (`agent_log`), the steps as they finish, and the run's outputs (`workflow_finished`); Stop while it runs; a
// reload mid-run resumes it. A run that pauses on a human-input form shows the form; its
// answer resumes the run, which the page follows again (as it does after a reload).
import { html, useEffect, useLayoutEffect, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { pending } from "../sse.js";
import { HumanForm } from "../human_form.js";
import { Thoughts, withAgentLog } from "../thoughts.js";
import { Button, ErrorBox, formatMs } from "../ui.js";
import { Attachments, InputForm, filesBody, formItems, initialInputs, inputsBody, uploadPolicy } from "./inputs.js";
import { follow, runNames } from "./stream.js";

// The run's whole state is rebuilt from its events: a reload mid-run follows the same run
// from its first event (`/workflow/{id}/events`), so the text and the steps come back whole,
// each once, and then live.
export default function Workflow({ client, parameters, site }) {
  const scope = `webapp.workflow.${client.code}`;
  const items = formItems(parameters);
  const policy = uploadPolicy(parameters);
  const [inputs, setInputs] = useState(() => initialInputs(items));
  const [files, setFiles] = useState([]);
  const [run, setRun] = useState(null); // {text, steps, status, outputs, error, elapsed, streaming, taskId}
  const [runError, setRunError] = useState(null);

  const fresh = (taskId, runId = null) => ({ text: "", steps: [], status: "running", outputs: null, error: null, streaming: true, taskId, runId, forms: [], answered: [] });

  // Reads a run's events into `state` from its first one; the run stays in sessionStorage
  // ({workflowRunId, inputs}) until it ends, for a reload to pick it up.
  const consume = async (response, state) => {
    setRun({ ...state });
    const result = await follow(response, (event) => {
      if (!event) return;
      const data = event.data || {};
      if (event.task_id) state.taskId = event.task_id;
      if (event.workflow_run_id) state.runId = event.workflow_run_id;
      if (event.event === "human_input_required") state.forms = [...state.forms.filter((f) => f.node_id !== data.node_id), data];
      if (event.event === "workflow_paused") { state.status = "paused"; state.elapsed = data.elapsed_time; }
      if (event.event === "text_chunk") state.text += data.text || "";
      if (event.event === "agent_log") state.thoughts = withAgentLog(state.thoughts, data);
      if (event.event === "text_replace") state.text = data.text || "";
      if (event.event === "node_finished") state.steps = [...state.steps, { id: data.id, title: data.title || data.node_type, status: data.status, elapsed: data.elapsed_time }];
      if (event.event === "workflow_finished") {
        state.status = data.status;
        state.outputs = data.outputs;
        state.elapsed = data.elapsed_time;
        if (data.error) state.error = { message: data.error };
      }
      setRun({ ...state });
    });
    if (state.status !== "paused") pending.clear(scope); // a paused run is followed again
    state.streaming = false;
    if (result.error) state.error = result.error;
    setRun({ ...state });
  };

  useLayoutEffect(() => { // a reload in the middle of a run: the same run, from its start
    const saved = pending.load(scope);
    if (!saved || !saved.workflowRunId) return;
    if (saved.inputs) setInputs({ ...initialInputs(items), ...saved.inputs });
    const state = fresh(saved.taskId || null, saved.workflowRunId);
    setRun({ ...state });
    client.send("GET", `/workflow/${saved.workflowRunId}/events`).then((response) => consume(response, state), (error) => {
      pending.clear(scope);
      setRun({ ...state, streaming: false, status: "unknown", error });
    });
  }, []);

  const start = async () => {
    if (run && run.streaming) return;
    setRunError(null);
    let response;
    try {
      response = await client.send("POST", "/workflows/run", {
        body: { inputs: inputsBody(items, inputs), response_mode: "streaming", files: filesBody(files) },
      });
    } catch (error) {
      setRunError(error);
      return;
    }
    const names = runNames(response);
    if (names.workflowRunId) pending.save(scope, { workflowRunId: names.workflowRunId, taskId: names.taskId, inputs });
    await consume(response, fresh(names.taskId, names.workflowRunId));
  };

  // The form answered (`token`; null: answered elsewhere, or out of time): the run goes on; its
  // events are followed again from its resumption, the steps before the pause kept.
  const resume = async (token) => {
    const state = fresh(run.taskId, run.runId);
    state.steps = run.steps;
    state.text = run.text;
    state.thoughts = run.thoughts;
    state.answered = [...run.answered, ...(token ? [token] : [])];
    setRun({ ...state });
    let response;
    try {
      response = await client.send("GET", `/workflow/${run.runId}/events`);
    } catch (error) {
      setRun({ ...state, streaming: false, status: "unknown", error });
      return;
    }
    await consume(response, state);
  };
  const open = run && run.status === "paused" && !run.streaming ? run.forms.filter((f) => !run.answered.includes(f.form_token)) : [];
  // Paused with every form answered (an answer given while the run still ran is taken up by
  // the server's sweep within seconds): followed again a moment later.
  useEffect(() => {
    if (!run || run.status !== "paused" || run.streaming || open.length || !run.forms.length) return undefined;
    const later = setTimeout(() => resume(null), 2000);
    return () => clearTimeout(later);
  }, [run]);

  const stop = async () => {
    if (!run || !run.taskId) return;
    setRun((r) => ({ ...r, stopping: true }));
    try { await client.post(`/workflows/tasks/${run.taskId}/stop`, {}); } catch (error) { setRunError(error); return; }
    if (run.status === "paused" && !run.streaming) resume(null); // its stored end: stopped
  };

  const outputs = run && run.outputs && Object.keys(run.outputs).length ? run.outputs : null;
  return html`<div class="webapp-workflow">
    <form class="panel" aria-label="Inputs" onSubmit=${(e) => { e.preventDefault(); start(); }}>
      <h2>Inputs</h2>
      ${!items.length && html`<p class="muted">This workflow takes no inputs.</p>`}
      <${InputForm} items=${items} values=${inputs} onInput=${setInputs} disabled=${Boolean(run && run.streaming)} />
      <${Attachments} client=${client} policy=${policy} files=${files} onChange=${setFiles} disabled=${Boolean(run && run.streaming)} />
      <${ErrorBox} error=${runError} />
      <div class="row">
        <${Button} kind="primary" type="submit" disabled=${Boolean(run && run.streaming)}>Run<//>
        ${run && (run.streaming || run.status === "paused") && html`<${Button} kind="danger" type="button" onClick=${stop} busy=${Boolean(run.stopping)} disabled=${!run.taskId}>Stop<//>`}
      </div>
    </form>
    ${run && html`<section class="panel result" aria-label="Result" aria-live="polite" aria-busy=${run.streaming ? "true" : "false"}>
      <h2>Result <span class=${`status ${run.status}`}>${run.status}</span>${run.elapsed ? html` <span class="muted">${formatMs(run.elapsed * 1000)}</span>` : ""}</h2>
      <${Thoughts} thoughts=${run.thoughts} />
      ${run.text && html`<div class="result-text">${run.text}</div>`}
      ${outputs && html`<dl class="outputs">${Object.entries(outputs).map(([name, value]) => html`<dt>${name}</dt>
        <dd class="result-text">${typeof value === "string" ? value : JSON.stringify(value, null, 2)}</dd>`)}</dl>`}
      <${ErrorBox} error=${run.error} />
      ${run.status === "paused" && !run.streaming && !open.length && html`<p class="muted">Answered: the run goes on in a moment.</p>`}
      ${open.some((form) => form.display_in_ui === false) && html`<p class="muted">Waiting for an answer given elsewhere.</p>`}
      ${site.show_workflow_steps !== false && run.steps.length > 0 && html`<details class="steps"><summary>Steps (${run.steps.length})</summary>
        <ol>${run.steps.map((s) => html`<li key=${s.id}>${s.title} <span class=${`status ${s.status}`}>${s.status}</span> ${s.elapsed ? formatMs(s.elapsed * 1000) : ""}</li>`)}</ol>
      </details>`}
    </section>`}
    ${open.filter((form) => form.display_in_ui !== false).map((form) => html`<${HumanForm} key=${form.form_token} form=${form}
      submit=${(action, inputs) => client.post(`/form/human_input/${form.form_token}`, { inputs, action })}
      onAnswered=${() => resume(form.form_token)} />`)}
  </div>`;
}
