// The completion page of a site: the input form, Run (the result streams in, Stop; a reload
// mid-run resumes the same result), like and dislike, save the result (the saved list, with
// delete), and "More like this" when the app enables it.
import { html, useEffect, useLayoutEffect, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { pending } from "../sse.js";
import { Button, ErrorBox, Loading, useAction, formatTime } from "../ui.js";
import { Attachments, InputForm, filesBody, formItems, initialInputs, inputsBody, uploadPolicy } from "./inputs.js";
import { followToEnd, resumeRun, runNames } from "./stream.js";

export default function Completion({ client, parameters }) {
  const scope = `webapp.completion.${client.code}`;
  const items = formItems(parameters);
  const policy = uploadPolicy(parameters);
  const moreLikeThis = Boolean(parameters.more_like_this && parameters.more_like_this.enabled);
  const [inputs, setInputs] = useState(() => initialInputs(items));
  const [files, setFiles] = useState([]);
  const [results, setResults] = useState([]); // [{key, id, answer, streaming, error, rating, saved}]
  const [live, setLive] = useState(null);
  const [runError, setRunError] = useState(null);
  const [saved, setSaved] = useState({ data: null, error: null });

  const loadSaved = async () => {
    try {
      const reply = await client.get("/saved-messages", { limit: 100 });
      setSaved({ data: reply.data, error: null });
    } catch (error) {
      setSaved((s) => ({ ...s, error }));
    }
  };
  useLayoutEffect(() => { loadSaved(); }, []); // at commit, not a frame later

  const patch = (key, change) => setResults((now) => now.map((r) => (r.key === key ? { ...r, ...change } : r)));

  // Reads a run's stream into the result `key`; `state` ({taskId, id, answer, lastId, label,
  // inputs: the form's values}) is kept in sessionStorage as it goes, so that a reload picks
  // the same run up, and the form it ran with.
  const consume = async (response, key, state) => {
    setLive({ taskId: state.taskId, key });
    const result = await followToEnd(client, "/completion-messages", response, (event, id) => {
      if (!event) return;
      if (event.task_id && event.task_id !== state.taskId) {
        state.taskId = event.task_id;
        setLive((l) => l && { ...l, taskId: event.task_id });
      }
      if (event.message_id) state.id = event.message_id;
      if (event.event === "message") state.answer += event.answer || "";
      if (event.event === "message_replace") state.answer = event.answer || "";
      if (event.event === "message_end") state.ended = true;
      if (id !== null && id !== undefined && state.taskId) {
        state.lastId = id;
        pending.save(scope, state);
      }
      patch(key, { id: state.id, answer: state.answer });
    }, state, () => Boolean(state.ended));
    pending.clear(scope);
    patch(key, { streaming: false, error: result.error, id: state.id });
    setLive(null);
  };

  // A reload in the middle of a run: the same result, from the event after the last one shown.
  useLayoutEffect(() => {
    const saved = pending.load(scope);
    if (!saved || !saved.taskId) return;
    const key = `r${Date.now()}`;
    const state = { ...saved, answer: saved.answer || "" };
    if (saved.inputs) setInputs({ ...initialInputs(items), ...saved.inputs }); // the form it ran with
    setResults([{ key, label: state.label || "Result", id: state.id, answer: state.answer, streaming: true }]);
    setLive({ taskId: state.taskId, key });
    resumeRun(client, "/completion-messages", state, (response) => consume(response, key, state), (error) => {
      pending.clear(scope);
      patch(key, { streaming: false, error });
      setLive(null);
    });
  }, []);

  const start = async (request, label) => {
    if (live) return;
    setRunError(null);
    const key = `r${Date.now()}`;
    let response;
    try {
      response = await request();
    } catch (error) {
      setRunError(error);
      return;
    }
    setResults((now) => [{ key, label, answer: "", streaming: true }, ...now]);
    const names = runNames(response);
    const state = { taskId: names.taskId, id: names.messageId, answer: "", lastId: null, label, inputs };
    if (state.taskId) pending.save(scope, state);
    await consume(response, key, state);
  };

  const run = () => start(() => client.send("POST", "/completion-messages", {
    body: { inputs: inputsBody(items, inputs), query: "", response_mode: "streaming", files: filesBody(files) },
  }), "Result");

  const more = (result) => start(() => client.send("GET", `/messages/${result.id}/more-like-this`, {
    query: { response_mode: "streaming" },
  }), "More like this");

  const stop = async () => {
    if (!live || !live.taskId) return;
    setLive((l) => ({ ...l, stopping: true }));
    try { await client.post(`/completion-messages/${live.taskId}/stop`, {}); } catch (error) { setRunError(error); }
  };

  const rate = async (result, rating) => {
    const next = result.rating === rating ? null : rating;
    try {
      await client.post(`/messages/${result.id}/feedbacks`, { rating: next });
      patch(result.key, { rating: next, actionError: null });
    } catch (error) { patch(result.key, { actionError: error }); }
  };

  const save = async (result) => {
    try {
      await client.post("/saved-messages", { message_id: result.id });
      patch(result.key, { saved: true, actionError: null });
      loadSaved();
    } catch (error) { patch(result.key, { actionError: error }); }
  };

  const [unsave, , unsaveError] = useAction(async (id) => {
    await client.delete(`/saved-messages/${id}`);
    setResults((now) => now.map((r) => (r.id === id ? { ...r, saved: false } : r)));
    await loadSaved();
  });

  return html`<div class="webapp-completion">
    <form class="panel" aria-label="Inputs" onSubmit=${(e) => { e.preventDefault(); run(); }}>
      <h2>Inputs</h2>
      <${InputForm} items=${items} values=${inputs} onInput=${setInputs} disabled=${Boolean(live)} />
      <${Attachments} client=${client} policy=${policy} files=${files} onChange=${setFiles} disabled=${Boolean(live)} />
      <${ErrorBox} error=${runError} />
      <div class="row">
        <${Button} kind="primary" type="submit" disabled=${Boolean(live)}>Run<//>
        ${live && html`<${Button} kind="danger" type="button" onClick=${stop} busy=${Boolean(live.stopping)} disabled=${!live.taskId}>Stop<//>`}
      </div>
    </form>
    <section aria-label="Results" aria-live="polite">
      ${results.map((r) => html`<article class="panel result" key=${r.key} aria-busy=${r.streaming ? "true" : "false"}>
        <h2>${r.label}</h2>
        <div class="result-text">${r.answer}${r.streaming && !r.answer ? html`<span class="muted">…</span>` : ""}</div>
        <${ErrorBox} error=${r.error} />
        ${!r.streaming && r.id && html`<div class="answer-actions">
          <button type="button" class="button secondary small" aria-pressed=${r.rating === "like" ? "true" : "false"} onClick=${() => rate(r, "like")}>Like</button>
          <button type="button" class="button secondary small" aria-pressed=${r.rating === "dislike" ? "true" : "false"} onClick=${() => rate(r, "dislike")}>Dislike</button>
          <button type="button" class="button secondary small" disabled=${r.saved} onClick=${() => save(r)}>${r.saved ? "Saved" : "Save"}</button>
          ${moreLikeThis && html`<button type="button" class="button secondary small" disabled=${Boolean(live)} onClick=${() => more(r)}>More like this</button>`}
        </div>`}
        <${ErrorBox} error=${r.actionError} />
      </article>`)}
    </section>
    <section class="saved" aria-labelledby="saved-title">
      <h2 id="saved-title">Saved results</h2>
      <${ErrorBox} error=${saved.error} onRetry=${loadSaved} />
      <${ErrorBox} error=${unsaveError} />
      ${saved.data === null && !saved.error && html`<${Loading} what="Loading saved results" />`}
      ${saved.data && !saved.data.length && html`<p class="empty">Nothing saved yet.</p>`}
      ${saved.data && saved.data.length > 0 && html`<ul class="saved-list">${saved.data.map((s) => html`<li key=${s.id} class="panel">
        <div class="result-text">${s.answer}</div>
        <div class="meta">${formatTime(s.created_at)}
          <${Button} class="button secondary small" onClick=${() => unsave(s.id)} aria-label=${`Remove saved result from ${formatTime(s.created_at)}`}>Remove<//></div>
      </li>`)}</ul>`}
    </section>
  </div>`;
}
