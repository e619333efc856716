// The chat page of a site: the conversations (pinned first; pin, rename, delete), the opening
// statement and suggested questions, the input form of a new conversation, the streamed
// answer with Stop, like/dislike, suggested questions after an answer, attachments. A reload
// mid-answer resumes the same answer: the stream's last event id and the text so far are kept
// with js/sse.js `pending`, and `GET /api/chat-messages/{task}/events` continues after it.
import { html, useEffect, useLayoutEffect, useRef, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { pending } from "../sse.js";
import { Thoughts, withAgentLog, withThought } from "../thoughts.js";
import { Button, Dialog, ErrorBox, Field, Loading, useAction } from "../ui.js";
import { Attachments, InputForm, filesBody, formItems, initialInputs, inputsBody, uploadPolicy } from "./inputs.js";
import { followToEnd, resumeRun, runNames } from "./stream.js";

let keys = 0;
const nextKey = () => `m${++keys}`;

function fromServer(m) {
  return {
    key: m.id, id: m.id, query: m.query, answer: m.answer || "", thoughts: m.agent_thoughts || [],
    rating: m.feedback ? m.feedback.rating : null,
    files: (m.message_files || []).filter((f) => f.belongs_to !== "assistant").map((f) => ({ name: f.filename || f.type, upload_file_id: f.upload_file_id || f.id })),
    error: m.status === "error" && m.error ? { message: m.error } : null,
  };
}

export default function Chat({ client, parameters, site }) {
  const scope = `webapp.${client.code}`;
  const items = formItems(parameters);
  const policy = uploadPolicy(parameters);
  const afterAnswer = Boolean(parameters.suggested_questions_after_answer && parameters.suggested_questions_after_answer.enabled);
  const speakable = Boolean(parameters.text_to_speech && parameters.text_to_speech.enabled);
  const listens = Boolean(parameters.speech_to_text && parameters.speech_to_text.enabled
    && globalThis.MediaRecorder && navigator.mediaDevices);

  const [lists, setLists] = useState(() => {
    const both = client.early(["/conversations?pinned=true&limit=100", "/conversations?pinned=false&limit=100"]);
    return both ? { pinned: both[0].data, others: both[1].data, loaded: true, error: null, fresh: true } : { pinned: [], others: [], loaded: false, error: null };
  });
  const [currentId, setCurrentId] = useState(null);
  const [messages, setMessages] = useState([]);
  const [history, setHistory] = useState({ loading: false, error: null });
  const [inputs, setInputs] = useState(() => initialInputs(items));
  const [draft, setDraft] = useState("");
  const [files, setFiles] = useState([]);
  const [live, setLive] = useState(null); // {taskId, messageKey, stopping}
  const [sendError, setSendError] = useState(null);
  const [suggested, setSuggested] = useState([]);
  const [sidebarOpen, setSidebarOpen] = useState(false);
  const [renaming, setRenaming] = useState(null);
  const [deleting, setDeleting] = useState(null);
  const logEnd = useRef(null);
  const current = useRef(null); // the conversation shown, for callbacks of a finished stream
  current.current = currentId;

  const loadLists = async () => {
    try {
      const [pinned, others] = await Promise.all([
        client.get("/conversations", { pinned: "true", limit: 100 }),
        client.get("/conversations", { pinned: "false", limit: 100 }),
      ]);
      setLists({ pinned: pinned.data, others: others.data, loaded: true, error: null });
    } catch (error) {
      setLists((l) => ({ ...l, loaded: true, error }));
    }
  };

  const loadMessages = async (conversationId, skip) => {
    setHistory({ loading: true, error: null });
    try {
      const reply = await client.get("/messages", { conversation_id: conversationId, limit: 100 });
      const shown = reply.data.filter((m) => m.id !== skip).map(fromServer);
      setMessages((now) => [...shown, ...now.filter((m) => m.streaming)]);
      setHistory({ loading: false, error: null });
    } catch (error) {
      setHistory({ loading: false, error });
    }
  };

  const patchMessage = (key, change) =>
    setMessages((now) => now.map((m) => (m.key === key ? { ...m, ...(typeof change === "function" ? change(m) : change) } : m)));

  // Reads a chat stream into the message `key`; `state` is what pending keeps.
  const consume = async (response, key, state) => {
    const onEvent = (event, id) => {
      if (!event) return;
      if (event.task_id) state.taskId = event.task_id;
      if (event.conversation_id) state.conversationId = event.conversation_id;
      if (event.message_id) state.messageId = event.message_id;
      if (event.event === "message" || event.event === "agent_message") state.answer += event.answer || "";
      if (event.event === "message_replace") state.answer = event.answer || "";
      if (event.event === "agent_thought") state.thoughts = withThought(state.thoughts, event);
      if (event.event === "agent_log") state.thoughts = withAgentLog(state.thoughts, event.data || {}); // a chatflow's agent node
      if (id !== null && id !== undefined) {
        state.lastId = id;
        pending.save(scope, state);
      }
      patchMessage(key, { id: state.messageId, answer: state.answer, thoughts: state.thoughts || [] });
      if (state.conversationId && !current.current) setCurrentId(state.conversationId);
      if (event.event === "message_end") state.ended = true;
    };
    const result = await followToEnd(client, "/chat-messages", response, onEvent, state, () => Boolean(state.ended));
    pending.clear(scope);
    patchMessage(key, { streaming: false, error: result.error, id: state.messageId });
    setLive(null);
    loadLists();
    if (state.ended && !result.error && afterAnswer && state.messageId) {
      try {
        const reply = await client.get(`/messages/${state.messageId}/suggested-questions`);
        if (current.current === state.conversationId) setSuggested(reply.data || []);
      } catch { /* no suggestions: the answer stands */ }
    }
  };

  const send = async (query) => {
    const text = (query ?? draft).trim();
    if (!text || live) return;
    setSendError(null);
    setSuggested([]);
    const key = nextKey();
    const attached = files;
    const body = {
      query: text,
      inputs: currentId ? {} : inputsBody(items, inputs),
      response_mode: "streaming",
      conversation_id: currentId || "",
      files: filesBody(attached),
    };
    setMessages((now) => [...now, { key, query: text, answer: "", files: attached, streaming: true }]);
    setDraft("");
    setFiles([]);
    let response;
    try {
      response = await client.send("POST", "/chat-messages", { body });
    } catch (error) {
      setMessages((now) => now.filter((m) => m.key !== key));
      setDraft(text);
      setFiles(attached);
      setSendError(error);
      return;
    }
    const names = runNames(response);
    const state = { taskId: names.taskId, messageId: names.messageId, conversationId: names.conversationId || currentId, query: text, answer: "", lastId: null, files: attached };
    if (state.taskId) pending.save(scope, state);
    if (state.conversationId && !currentId) setCurrentId(state.conversationId);
    setLive({ taskId: state.taskId, key });
    await consume(response, key, state);
  };

  const stop = async () => {
    if (!live || !live.taskId) return;
    setLive((l) => l && { ...l, stopping: true });
    try {
      await client.post(`/chat-messages/${live.taskId}/stop`, {});
    } catch (error) {
      setSendError(error);
    }
  };

  // On first load: the conversations, and an answer a reload cut off (at commit, not a frame
  // later: see ../api.js).
  useLayoutEffect(() => {
    if (!lists.fresh) loadLists(); // else the boot script's replies are shown already
    const saved = pending.load(scope);
    if (!saved || !saved.taskId) return;
    const key = nextKey();
    const state = { ...saved, answer: saved.answer || "" };
    setCurrentId(state.conversationId || null);
    setMessages([{ key, id: state.messageId, query: state.query, answer: state.answer, thoughts: state.thoughts || [], files: state.files || [], streaming: true }]);
    setLive({ taskId: state.taskId, key });
    if (state.conversationId) loadMessages(state.conversationId, state.messageId);
    resumeRun(client, "/chat-messages", state, (response) => consume(response, key, state), (error) => {
      pending.clear(scope);
      patchMessage(key, { streaming: false, error });
      setLive(null);
    });
  }, []);

  useEffect(() => {
    if (logEnd.current && logEnd.current.scrollIntoView) logEnd.current.scrollIntoView({ block: "end" });
  }, [messages]);

  const open = (id) => {
    if (live) return;
    setSidebarOpen(false);
    setSuggested([]);
    setSendError(null);
    setCurrentId(id);
    setMessages([]);
    if (id) loadMessages(id);
  };

  // An answer read aloud (the app enables text to speech): its audio, from the server, shown
  // as a player under the answer and started at once.
  const speak = async (message) => {
    patchMessage(message.key, { speaking: true, speakError: null });
    try {
      const response = await client.send("POST", "/text-to-audio", { body: { message_id: message.id } });
      const audio = URL.createObjectURL(await response.blob());
      patchMessage(message.key, { speaking: false, audio });
    } catch (error) {
      patchMessage(message.key, { speaking: false, speakError: error });
    }
  };

  const rate = async (message, rating) => {
    const next = message.rating === rating ? null : rating;
    try {
      await client.post(`/messages/${message.id}/feedbacks`, { rating: next });
      patchMessage(message.key, { rating: next, rateError: null });
    } catch (error) {
      patchMessage(message.key, { rateError: error });
    }
  };

  const [pinAction, , pinError] = useAction(async (conversation, pin) => {
    await client.patch(`/conversations/${conversation.id}/${pin ? "pin" : "unpin"}`);
    await loadLists();
  });

  const all = [...lists.pinned, ...lists.others];
  const shown = all.find((c) => c.id === currentId);
  const starting = !currentId && messages.length === 0;
  const statement = parameters.opening_statement;
  const questions = parameters.suggested_questions || [];

  return html`<div class="webapp-chat">
    <button type="button" class="button secondary sidebar-toggle" aria-expanded=${sidebarOpen ? "true" : "false"}
      aria-controls="conversations" onClick=${() => setSidebarOpen(!sidebarOpen)}>
      ${sidebarOpen ? "Hide conversations" : "Conversations"}
    </button>
    <nav id="conversations" class=${`conversations${sidebarOpen ? " open" : ""}`} aria-label="Conversations">
      <${Button} kind="primary" onClick=${() => open(null)} disabled=${Boolean(live)}>New conversation<//>
      <${ErrorBox} error=${lists.error} onRetry=${loadLists} />
      <${ErrorBox} error=${pinError} />
      ${!lists.loaded && html`<${Loading} what="Loading conversations" />`}
      ${lists.loaded && !all.length && !lists.error && html`<p class="empty">No conversations yet.</p>`}
      ${lists.pinned.length > 0 && html`<h2 class="list-title">Pinned</h2>
        <ul class="conversation-list">${lists.pinned.map((c) => html`<${ConversationItem} key=${c.id} conversation=${c} pinned
          current=${c.id === currentId} busy=${Boolean(live)} onOpen=${open} onPin=${pinAction} onRename=${setRenaming} onDelete=${setDeleting} />`)}</ul>`}
      ${lists.others.length > 0 && html`<h2 class="list-title">${lists.pinned.length ? "Others" : "Conversations"}</h2>
        <ul class="conversation-list">${lists.others.map((c) => html`<${ConversationItem} key=${c.id} conversation=${c}
          current=${c.id === currentId} busy=${Boolean(live)} onOpen=${open} onPin=${pinAction} onRename=${setRenaming} onDelete=${setDeleting} />`)}</ul>`}
    </nav>
    <section class="chat-pane" aria-label="Chat">
      <h2 class="conversation-title">${shown ? shown.name || "Untitled conversation" : currentId ? "Conversation" : "New conversation"}</h2>
      ${starting && html`<div class="start">
        ${items.length > 0 && html`<form class="panel" aria-label="Before you start" onSubmit=${(e) => e.preventDefault()}>
          <h3>Before you start</h3>
          <${InputForm} items=${items} values=${inputs} onInput=${setInputs} />
        </form>`}
      </div>`}
      <div class="chat-log" aria-live="polite" aria-busy=${live ? "true" : "false"}>
        ${statement && html`<div class="bubble assistant opening">${statement}</div>`}
        ${starting && questions.length > 0 && html`<${Suggestions} label="Suggested questions" questions=${questions} onPick=${send} disabled=${Boolean(live)} />`}
        <${ErrorBox} error=${history.error} onRetry=${() => loadMessages(currentId)} />
        ${history.loading && html`<${Loading} what="Loading messages" />`}
        ${messages.map((m) => html`<${Turn} key=${m.key} message=${m} onRate=${rate} onSpeak=${speakable ? speak : null} />`)}
        ${suggested.length > 0 && !live && html`<${Suggestions} label="You could ask next" questions=${suggested} onPick=${send} />`}
        <div ref=${logEnd}></div>
      </div>
      <${ErrorBox} error=${sendError} />
      <form class="composer" onSubmit=${(e) => { e.preventDefault(); send(); }}>
        <${Attachments} client=${client} policy=${policy} files=${files} onChange=${setFiles} disabled=${Boolean(live)} />
        <div class="composer-row">
          <label for="message" class="visually-hidden">Message</label>
          <textarea id="message" rows="2" placeholder=${site.input_placeholder || "Type a message"} value=${draft}
            onInput=${(e) => setDraft(e.currentTarget.value)}
            onKeyDown=${(e) => { if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); } }}></textarea>
          ${listens && !live && html`<${Recorder} client=${client} onText=${(text) => setDraft((now) => (now ? `${now} ${text}` : text))} />`}
          ${live
            ? html`<${Button} kind="danger" type="button" onClick=${stop} busy=${Boolean(live.stopping)} disabled=${!live.taskId}>Stop<//>`
            : html`<${Button} kind="primary" type="submit" disabled=${!draft.trim()}>Send<//>`}
        </div>
      </form>
    </section>
    <${RenameDialog} client=${client} conversation=${renaming} onClose=${() => setRenaming(null)} onDone=${loadLists} />
    <${DeleteDialog} client=${client} conversation=${deleting} onClose=${() => setDeleting(null)}
      onDone=${(id) => { if (id === currentId) open(null); loadLists(); }} />
  </div>`;
}

// Speech to text (the app enables it): the microphone recorded until Stop, then the server's
// transcript (/api/audio-to-text) added to the message being written.
function Recorder({ client, onText }) {
  const [state, setState] = useState("idle"); // idle | recording | sending
  const [error, setError] = useState(null);
  const recorder = useRef(null);

  const start = async () => {
    setError(null);
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const chunks = [];
      const media = new MediaRecorder(stream);
      media.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
      media.onstop = async () => {
        stream.getTracks().forEach((track) => track.stop());
        setState("sending");
        const type = (media.mimeType || "audio/webm").split(";")[0];
        const form = new FormData();
        form.append("file", new Blob(chunks, { type }), `recording.${type.split("/")[1] || "webm"}`);
        try {
          const reply = await client.send("POST", "/audio-to-text", { form });
          const { text } = await reply.json();
          if (text) onText(text);
        } catch (failure) {
          setError(failure);
        }
        setState("idle");
      };
      recorder.current = media;
      media.start();
      setState("recording");
    } catch (failure) {
      setError(new Error(`The microphone cannot be used: ${failure.message || failure}`));
      setState("idle");
    }
  };

  return html`<span class="recorder">
    ${state === "recording"
      ? html`<${Button} kind="danger" type="button" onClick=${() => recorder.current && recorder.current.stop()}>Stop recording<//>`
      : html`<${Button} type="button" busy=${state === "sending"} onClick=${start}>${state === "sending" ? "Transcribing…" : "Record"}<//>`}
    <${ErrorBox} error=${error} />
  </span>`;
}

function Suggestions({ label, questions, onPick, disabled }) {
  return html`<div class="suggestions" role="group" aria-label=${label}>
    ${questions.map((q) => html`<button type="button" class="button secondary suggestion" disabled=${disabled} onClick=${() => onPick(q)}>${q}</button>`)}
  </div>`;
}

function Turn({ message, onRate, onSpeak }) {
  const m = message;
  return html`<div class="turn">
    <div class="bubble user"><span class="visually-hidden">You: </span>${m.query}
      ${m.files && m.files.length > 0 && html`<div class="meta">Attached: ${m.files.map((f) => f.name).join(", ")}</div>`}
    </div>
    <div class="bubble assistant" aria-busy=${m.streaming ? "true" : "false"}>
      <${Thoughts} thoughts=${m.thoughts} />
      <span class="visually-hidden">Answer: </span><span class="answer-text">${m.answer}</span>${m.streaming && !m.answer ? html`<span class="muted">…</span>` : ""}
      ${m.error && html`<${ErrorBox} error=${m.error} />`}
      ${!m.streaming && m.id && html`<div class="answer-actions">
        <button type="button" class="button secondary small" aria-pressed=${m.rating === "like" ? "true" : "false"} onClick=${() => onRate(m, "like")}>Like</button>
        <button type="button" class="button secondary small" aria-pressed=${m.rating === "dislike" ? "true" : "false"} onClick=${() => onRate(m, "dislike")}>Dislike</button>
        ${onSpeak && html`<button type="button" class="button secondary small" disabled=${Boolean(m.speaking)}
          aria-busy=${m.speaking ? "true" : undefined} onClick=${() => onSpeak(m)}>Read aloud</button>`}
      </div>`}
      ${m.audio && html`<audio class="answer-audio" controls autoplay src=${m.audio} aria-label="The answer read aloud"></audio>`}
      ${m.rateError && html`<${ErrorBox} error=${m.rateError} />`}
      ${m.speakError && html`<${ErrorBox} error=${m.speakError} />`}
    </div>
  </div>`;
}

function ConversationItem({ conversation, pinned, current, busy, onOpen, onPin, onRename, onDelete }) {
  const [menu, setMenu] = useState(false);
  const name = conversation.name || "Untitled conversation";
  const menuId = `actions-${conversation.id}`;
  return html`<li class=${`conversation${current ? " current" : ""}`}>
    <div class="conversation-row">
      <button type="button" class="conversation-open" aria-current=${current ? "true" : undefined} disabled=${busy} onClick=${() => onOpen(conversation.id)}>${name}</button>
      <button type="button" class="button secondary small" aria-expanded=${menu ? "true" : "false"} aria-controls=${menuId}
        aria-label=${`Actions for ${name}`} onClick=${() => setMenu(!menu)}>⋯</button>
    </div>
    ${menu && html`<div class="conversation-actions" id=${menuId}>
      <button type="button" class="button secondary small" onClick=${() => { setMenu(false); onPin(conversation, !pinned); }}>${pinned ? "Unpin" : "Pin"}</button>
      <button type="button" class="button secondary small" onClick=${() => { setMenu(false); onRename(conversation); }}>Rename</button>
      <button type="button" class="button danger small" onClick=${() => { setMenu(false); onDelete(conversation); }}>Delete</button>
    </div>`}
  </li>`;
}

function RenameDialog({ client, conversation, onClose, onDone }) {
  const [name, setName] = useState("");
  useEffect(() => { setName(conversation ? conversation.name || "" : ""); }, [conversation]);
  const [save, busy, error] = useAction(async () => {
    await client.post(`/conversations/${conversation.id}/name`, { name: name.trim(), auto_generate: false });
    onClose();
    onDone();
  });
  return html`<${Dialog} title="Rename conversation" open=${Boolean(conversation)} onClose=${onClose}>
    <form onSubmit=${(e) => { e.preventDefault(); save(); }}>
      <${Field} label="Name" value=${name} onInput=${setName} required maxlength="255" />
      <${ErrorBox} error=${error} />
      <div class="row"><${Button} kind="primary" type="submit" busy=${busy}>Save<//><${Button} type="button" onClick=${onClose}>Cancel<//></div>
    </form>
  <//>`;
}

function DeleteDialog({ client, conversation, onClose, onDone }) {
  const [remove, busy, error] = useAction(async () => {
    const id = conversation.id;
    await client.delete(`/conversations/${id}`);
    onClose();
    onDone(id);
  });
  return html`<${Dialog} title="Delete conversation" open=${Boolean(conversation)} onClose=${onClose}>
    <p>Delete “${conversation && (conversation.name || "Untitled conversation")}” and its messages? This cannot be undone.</p>
    <${ErrorBox} error=${error} />
    <div class="row"><${Button} kind="danger" onClick=${remove} busy=${busy}>Delete<//><${Button} onClick=${onClose}>Cancel<//></div>
  <//>`;
}
