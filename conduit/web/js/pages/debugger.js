// The debugger of a chat, agent-chat or completion app: runs as the signed-in account
// (`POST /console/api/apps/{id}/chat-messages` or `/completion-messages`, streaming), the answer
// growing as `message` events arrive (an agent's `agent_message`, its tools used above it), Stop, the conversation kept across turns, and under each
// answer its usage, latency and request id.
//
// A stream in flight is kept with `pending.save` as each event arrives ({turn} with its task id,
// last event id and partial answer): after a reload, or when the connection drops mid-stream,
// the same answer resumes from there (`GET …/{task_id}/events` with `Last-Event-ID`), so each
// piece of it arrives exactly once.
//
// Selectors (tests, bench/ui.py): every assistant message is `[data-testid="answer"]` (with
// `data-status` streaming / done / stopped / error); the latest one also has
// `data-latest="true"`; its text is `[data-testid="answer-text"]`.
import { html, useEffect, useRef, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { api, send } from "../api.js";
import { AppPage } from "../app_nav.js";
import { pending, readEvents } from "../sse.js";
import { Thoughts, withThought } from "../thoughts.js";
import { Button, ErrorBox, Field, PageHeader, formatMs } from "../ui.js";

const RETRIES = 3; // reconnections after a dropped stream before saying so

export default function Debugger({ params }) {
  return html`<${AppPage} appId=${params.appId} current="/debug">
    ${(app) => html`<${DebugChat} key=${app.id} app=${app} />`}
  <//>`;
}

// The app's input form (`user_input_form`: [{"text-input": {...}}, …]) as [{type, ...field}].
function formFields(app) {
  const form = (app.model_config && app.model_config.user_input_form) || [];
  return form.flatMap((entry) => Object.entries(entry).map(([type, field]) => ({ type, ...field })))
    .filter((f) => f && f.variable);
}

function InputField({ field, value, onInput }) {
  const label = `${field.label || field.variable}${field.required ? " (required)" : ""}`;
  const common = { label, value, onInput, required: Boolean(field.required), name: field.variable };
  if (field.type === "select") {
    const options = [{ value: "", label: "Choose…" }, ...(field.options || []).map((o) => ({ value: o, label: o }))];
    return html`<${Field} as="select" options=${options} ...${common} />`;
  }
  if (field.type === "paragraph") return html`<${Field} as="textarea" maxlength=${field.max_length} ...${common} />`;
  if (field.type === "number") return html`<${Field} type="number" ...${common} />`;
  return html`<${Field} maxlength=${field.max_length || undefined} ...${common} />`;
}

const storeKey = (appId) => `conduit.debug.log.${appId}`;

function loadLog(appId) {
  try {
    return JSON.parse(sessionStorage.getItem(storeKey(appId)) || "null") || { turns: [], conversationId: "" };
  } catch {
    return { turns: [], conversationId: "" };
  }
}

function DebugChat({ app }) {
  const kind = app.mode === "completion" ? "completion" : "chat";
  const base = `/apps/${app.id}/${kind}-messages`;
  const scope = `debug.${app.id}`;
  const fields = formFields(app);
  const [turns, setTurns] = useState(() => {
    const saved = loadLog(app.id).turns.filter((t) => t.status !== "streaming");
    const inFlight = pending.load(scope);
    return inFlight && inFlight.turn ? [...saved, inFlight.turn] : saved;
  });
  const [conversationId, setConversationId] = useState(() => loadLog(app.id).conversationId || "");
  const [query, setQuery] = useState("");
  const [inputs, setInputs] = useState({});
  const [stopping, setStopping] = useState(false);
  const live = useRef(null); // the turn being streamed (a mutable copy, published on each event)
  const streaming = turns.some((t) => t.status === "streaming");

  // Finished turns survive a reload (the one in flight is in `pending`).
  useEffect(() => {
    if (streaming) return;
    sessionStorage.setItem(storeKey(app.id), JSON.stringify({ turns, conversationId }));
  }, [turns, conversationId, streaming]);

  const publish = (turn) => {
    const copy = { ...turn };
    setTurns((all) => all.map((t) => (t.id === copy.id ? copy : t)));
    if (copy.conversationId && kind === "chat") setConversationId(copy.conversationId);
  };

  // Applies one event to `turn`, keeps the stream's place, shows it.
  const apply = (turn, event, id) => {
    if (!event || event.event === "ping") return;
    if (event.task_id) turn.taskId = event.task_id;
    if (event.message_id) turn.messageId = event.message_id;
    if (event.conversation_id) turn.conversationId = event.conversation_id;
    switch (event.event) {
      case "message":
      case "agent_message":
        if (turn.firstTokenMs == null) turn.firstTokenMs = Date.now() - turn.startedAt;
        turn.answer += event.answer || "";
        break;
      case "message_replace":
        turn.answer = event.answer || "";
        break;
      case "agent_thought":
        turn.thoughts = withThought(turn.thoughts, event);
        break;
      case "message_end":
        turn.usage = (event.metadata && event.metadata.usage) || null;
        turn.totalMs = Date.now() - turn.startedAt;
        turn.status = turn.stopping ? "stopped" : "done";
        break;
      case "error":
        turn.error = { status: event.status, code: event.code, message: event.message || "The run failed." };
        turn.totalMs = Date.now() - turn.startedAt;
        turn.status = "error";
        break;
      default:
        break;
    }
    if (id !== null && id !== undefined) turn.lastId = id;
    if (turn.status === "streaming") pending.save(scope, { turn });
    else pending.clear(scope);
    publish(turn);
  };

  // Reads `response` to its end; reconnects (from the last event) when the stream drops.
  const follow = async (turn, response) => {
    let attempt = 0;
    let current = response;
    for (;;) {
      try {
        if (!current) {
          current = await send("GET", `${base}/${turn.taskId}/events`, {
            headers: turn.lastId ? { "last-event-id": String(turn.lastId) } : {},
          });
        }
        await readEvents(current, (event, id) => apply(turn, event, id), turn.lastId);
        if (turn.status !== "streaming") break;
        throw new Error("The stream ended before the answer did.");
      } catch (error) {
        current = null;
        const lost = !turn.taskId || (error.status && error.status < 500) || attempt >= RETRIES;
        if (lost) {
          turn.error = error.status ? error : { message: `${error.message || error} (the answer could not be resumed)` };
          turn.status = "error";
          pending.clear(scope);
          publish(turn);
          break;
        }
        attempt += 1;
        await new Promise((resolve) => setTimeout(resolve, 300 * attempt));
      }
    }
    live.current = null;
    setStopping(false);
  };

  // A reload mid-answer: pick the same answer up where it was.
  useEffect(() => {
    const inFlight = pending.load(scope);
    if (!inFlight || !inFlight.turn || live.current) return;
    const turn = { ...inFlight.turn, resumed: true };
    live.current = turn;
    follow(turn, null);
  }, []);

  const start = async (e) => {
    e.preventDefault();
    if (streaming) return;
    const text = query.trim();
    if (kind === "chat" && !text) return;
    const turn = {
      id: `t${Date.now()}`,
      query: kind === "chat" ? text : "",
      inputs: { ...inputs },
      answer: "",
      status: "streaming",
      startedAt: Date.now(),
      firstTokenMs: null,
      totalMs: null,
      usage: null,
      lastId: null,
      taskId: null,
      requestId: null,
      error: null,
    };
    live.current = turn;
    setTurns((all) => [...all, { ...turn }]);
    setQuery("");
    pending.save(scope, { turn });
    const body = { inputs: turn.inputs, response_mode: "streaming" };
    if (kind === "chat") Object.assign(body, { query: text, conversation_id: conversationId });
    let response;
    try {
      response = await send("POST", base, { body });
    } catch (error) {
      turn.error = error;
      turn.requestId = error.requestId;
      turn.status = "error";
      turn.totalMs = Date.now() - turn.startedAt;
      pending.clear(scope);
      publish(turn);
      live.current = null;
      return;
    }
    turn.requestId = response.headers.get("x-request-id");
    turn.taskId = response.headers.get("x-task-id") || null;
    await follow(turn, response);
  };

  const stop = async () => {
    const turn = live.current;
    if (!turn || !turn.taskId) return;
    turn.stopping = true;
    setStopping(true);
    try {
      await api.post(`${base}/${turn.taskId}/stop`, {});
    } catch (error) {
      turn.stopping = false;
      turn.error = error;
      publish(turn);
      setStopping(false);
    }
  };

  const restart = () => {
    setTurns([]);
    setConversationId("");
    sessionStorage.removeItem(storeKey(app.id));
  };

  const missing = fields.filter((f) => f.required && !String(inputs[f.variable] ?? "").trim());
  const speaks = Boolean(app.model_config && app.model_config.text_to_speech && app.model_config.text_to_speech.enabled);
  return html`
    <${PageHeader} title=${`Debug ${app.name}`}>
      <${Button} onClick=${restart} disabled=${streaming || !turns.length}>New conversation<//>
    <//>
    <p class="muted">
      Runs as you, streaming, against the app's saved model config.
      ${kind === "chat" && (conversationId ? html` Conversation <code data-testid="conversation-id">${conversationId}</code>.` : " A new conversation starts with the next message.")}
    </p>
    <div class="chat-log" role="log" aria-live="polite" aria-relevant="additions text" aria-label="Conversation">
      ${turns.length === 0 && html`<p class="empty">${kind === "chat" ? "No messages yet: send one below." : "No runs yet: fill in the inputs and run."}</p>`}
      ${turns.map((turn, index) => html`<${Turn} key=${turn.id} turn=${turn} latest=${index === turns.length - 1} speaksFor=${speaks ? app.id : null} />`)}
    </div>
    <form class="panel composer" onSubmit=${start} aria-label=${kind === "chat" ? "Send a message" : "Run the completion"}>
      ${fields.length > 0 && html`<fieldset class="inputs"><legend>Inputs</legend>
        ${fields.map((f) => html`<${InputField} key=${f.variable} field=${f} value=${inputs[f.variable] ?? ""}
          onInput=${(v) => setInputs((all) => ({ ...all, [f.variable]: v }))} />`)}
      </fieldset>`}
      ${kind === "chat" && html`<${Field} as="textarea" label="Message" rows="3" value=${query} onInput=${setQuery}
        hint="Enter sends; Shift+Enter starts a new line."
        onKeyDown=${(e) => { if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); e.currentTarget.form.requestSubmit(); } }} />`}
      <div class="row">
        <${Button} kind="primary" type="submit" disabled=${streaming || (kind === "chat" && !query.trim()) || missing.length > 0}>
          ${kind === "chat" ? "Send" : "Run"}
        <//>
        ${streaming && html`<${Button} kind="danger" onClick=${stop} busy=${stopping} disabled=${!live.current || !live.current.taskId}>Stop<//>`}
      </div>
    </form>`;
}

function Turn({ turn, latest, speaksFor }) {
  const inputs = Object.entries(turn.inputs || {}).filter(([, v]) => v !== "" && v !== undefined);
  return html`<div class="turn">
    ${(turn.query || inputs.length > 0) && html`<div class="bubble user" data-testid="query">
      ${turn.query}
      ${inputs.length > 0 && html`<div class="meta">${inputs.map(([k, v]) => `${k}: ${v}`).join(" · ")}</div>`}
    </div>`}
    <div class="bubble assistant" data-testid="answer" data-status=${turn.status} data-latest=${latest ? "true" : undefined}
      aria-busy=${turn.status === "streaming" ? "true" : "false"}>
      <${Thoughts} thoughts=${turn.thoughts} />
      <div class="answer-text" data-testid="answer-text">${turn.answer}</div>
      ${turn.status === "streaming" && !turn.answer && html`<span class="muted">Waiting for the first token…</span>`}
      ${turn.status === "stopped" && html`<span class="status stopped" data-testid="stopped">stopped</span>`}
      ${turn.resumed && turn.status !== "error" && html` <span class="muted">(resumed)</span>`}
      <${ErrorBox} error=${turn.error} />
      <${Meta} turn=${turn} />
      ${speaksFor && turn.messageId && turn.status !== "streaming" && html`<${ReadAloud} appId=${speaksFor} messageId=${turn.messageId} />`}
    </div>
  </div>`;
}

// The answer read aloud by the app's text to speech (the debugger's end user's message).
function ReadAloud({ appId, messageId }) {
  const [audio, setAudio] = useState(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const read = async () => {
    setBusy(true);
    setError(null);
    try {
      const response = await send("POST", `/apps/${appId}/text-to-audio`, { body: { message_id: messageId } });
      setAudio(URL.createObjectURL(await response.blob()));
    } catch (failure) {
      setError(failure);
    }
    setBusy(false);
  };
  return html`<div class="answer-actions">
    <${Button} busy=${busy} onClick=${read}>Read aloud<//>
    ${audio && html`<audio class="answer-audio" controls autoplay src=${audio} aria-label="The answer read aloud"></audio>`}
    <${ErrorBox} error=${error} />
  </div>`;
}

function Meta({ turn }) {
  const usage = turn.usage;
  const parts = [];
  if (usage) {
    parts.push(["Tokens", `${usage.prompt_tokens ?? 0} prompt + ${usage.completion_tokens ?? 0} completion = ${usage.total_tokens ?? 0} total`, "usage"]);
  }
  if (turn.firstTokenMs != null) parts.push(["First token", formatMs(turn.firstTokenMs), "first-token"]);
  if (turn.totalMs != null) parts.push(["Total", formatMs(turn.totalMs), "total-time"]);
  if (usage && usage.latency != null) parts.push(["Server latency", formatMs(Number(usage.latency) * 1000), "server-latency"]);
  if (turn.requestId) parts.push(["Request", turn.requestId, "request-id"]);
  if (!parts.length) return null;
  return html`<dl class="meta answer-meta" data-testid="answer-meta">
    ${parts.map(([label, value, id]) => html`<div><dt>${label}</dt> <dd data-testid=${id}>${value}</dd></div>`)}
  </dl>`;
}
