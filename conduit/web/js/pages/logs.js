// An app's logs: runs, tokens and latency per day (inline SVG charts, each with its data as a
// table), then its conversations page by page (keyword and date filters) and, for the one
// opened, its messages with feedback, tokens and latency. Chat apps read
// `…/chat-conversations` and `…/chat-messages`; completion apps `…/completion-conversations`
// (each run carries its message). Workflow apps keep their run history on the workflow page.
import { html, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { useResource } from "../api.js";
import { AnnotationForm } from "../annotation_form.js";
import { AppPage } from "../app_nav.js";
import { href } from "../router.js";
import { atLeast, useSession } from "../session.js";
import { Thoughts } from "../thoughts.js";
import { Button, Dialog, Field, Loaded, Notice, PageHeader, Table, formatMs, formatTime } from "../ui.js";

const DAY = 86_400_000;

export default function Logs({ params }) {
  return html`<${AppPage} appId=${params.appId} current="/logs">
    ${(app) => html`<${AppLogs} key=${app.id} app=${app} />`}
  <//>`;
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function days(start, end) {
  const found = [];
  for (let t = Date.parse(`${start}T00:00:00Z`); t <= Date.parse(`${end}T00:00:00Z`) && found.length < 400; t += DAY) {
    found.push(isoDay(new Date(t)));
  }
  return found;
}

function AppLogs({ app }) {
  const workflow = app.mode === "workflow";
  const completion = app.mode === "completion";
  const today = isoDay(new Date());
  const [draft, setDraft] = useState({ keyword: "", start: isoDay(new Date(Date.now() - 6 * DAY)), end: today });
  const [filters, setFilters] = useState(draft);
  const [page, setPage] = useState(1);
  const [open, setOpen] = useState(null);
  const apply = (e) => {
    e.preventDefault();
    setFilters(draft);
    setPage(1);
    setOpen(null);
  };
  return html`
    <${PageHeader} title=${`Logs of ${app.name}`} />
    <form class="row filters" onSubmit=${apply} aria-label="Filter the logs">
      ${!workflow && html`<${Field} label="Search messages" type="search" value=${draft.keyword} onInput=${(v) => setDraft({ ...draft, keyword: v })} />`}
      <${Field} label="From (UTC day)" type="date" value=${draft.start} max=${draft.end || undefined} onInput=${(v) => setDraft({ ...draft, start: v })} />
      <${Field} label="To (UTC day)" type="date" value=${draft.end} min=${draft.start || undefined} onInput=${(v) => setDraft({ ...draft, end: v })} />
      <div class="field"><${Button} kind="primary" type="submit">Apply<//></div>
    </form>
    <${Charts} app=${app} start=${filters.start} end=${filters.end} />
    ${workflow
      ? html`<p class="muted">A workflow app's runs are on its <a href=${href(`/apps/${app.id}/workflow`)}>workflow page</a>.</p>`
      : html`<${Conversations} app=${app} completion=${completion} filters=${filters} page=${page}
          setPage=${setPage} open=${open} setOpen=${setOpen} />`}`;
}

// --- charts ------------------------------------------------------------------------------------

const SERIES = [
  { path: "daily-messages", title: "Runs per day", key: "message_count", unit: "runs", fill: true },
  { path: "token-costs", title: "Tokens per day", key: "token_count", unit: "tokens", fill: true },
  { path: "average-response-time", title: "Average latency per day", key: "latency", unit: "ms", fill: false },
];

function Charts({ app, start, end }) {
  const range = { start: start || undefined, end: end || undefined };
  return html`<section aria-labelledby="charts-title">
    <h2 id="charts-title">Activity</h2>
    <div class="grid charts">
      ${SERIES.map((s) => html`<${Chart} key=${s.path} app=${app} series=${s} range=${range} />`)}
    </div>
  </section>`;
}

function Chart({ app, series, range }) {
  const stats = useResource(`/apps/${app.id}/statistics/${series.path}`, range);
  return html`<figure class="panel chart" data-testid=${`chart-${series.path}`}>
    <figcaption><strong>${series.title}</strong></figcaption>
    <${Loaded} resource=${stats} what=${`Loading ${series.title.toLowerCase()}`}>
      ${(reply) => html`<${ChartBody} series=${series} rows=${reply.data} range=${range} />`}
    <//>
  </figure>`;
}

function ChartBody({ series, rows, range }) {
  const byDay = new Map(rows.map((r) => [r.date, Number(r[series.key])]));
  const first = range.start || (rows[0] && rows[0].date);
  const last = range.end || (rows.length && rows[rows.length - 1].date);
  const axis = first && last ? days(first, last) : rows.map((r) => r.date);
  const points = axis
    .map((day, i) => ({ day, i, value: byDay.has(day) ? byDay.get(day) : series.fill ? 0 : null }))
    .filter((p) => p.value !== null);
  const width = 320;
  const height = 140;
  const pad = { left: 44, right: 10, top: 12, bottom: 24 };
  const max = Math.max(1, ...points.map((p) => p.value));
  const x = (i) => pad.left + (axis.length <= 1 ? (width - pad.left - pad.right) / 2 : (i * (width - pad.left - pad.right)) / (axis.length - 1));
  const y = (v) => height - pad.bottom - (v / max) * (height - pad.top - pad.bottom);
  const total = rows.reduce((sum, r) => sum + Number(r[series.key]), 0);
  const summary = rows.length
    ? series.fill
      ? `${total} ${series.unit} in total over ${axis.length} days`
      : `from ${formatMs(Math.min(...rows.map((r) => r.latency)))} to ${formatMs(Math.max(...rows.map((r) => r.latency)))}`
    : "no runs in this range";
  const label = (v) => (series.unit === "ms" ? formatMs(v) : String(Math.round(v)));
  return html`
    <svg viewBox=${`0 0 ${width} ${height}`} role="img" aria-label=${`${series.title}: ${summary}`} data-testid="chart">
      <line x1=${pad.left} y1=${height - pad.bottom} x2=${width - pad.right} y2=${height - pad.bottom} class="axis" />
      <line x1=${pad.left} y1=${pad.top} x2=${pad.left} y2=${height - pad.bottom} class="axis" />
      <text x=${pad.left - 4} y=${pad.top + 4} text-anchor="end" class="tick">${label(max)}</text>
      <text x=${pad.left - 4} y=${height - pad.bottom} text-anchor="end" class="tick">0</text>
      ${axis.length > 0 && html`<text x=${pad.left} y=${height - 6} class="tick">${axis[0].slice(5)}</text>`}
      ${axis.length > 1 && html`<text x=${width - pad.right} y=${height - 6} text-anchor="end" class="tick">${axis[axis.length - 1].slice(5)}</text>`}
      ${points.length > 1 && html`<polyline class="line" fill="none" points=${points.map((p) => `${x(p.i)},${y(p.value)}`).join(" ")} />`}
      ${points.map((p) => html`<circle class="point" data-testid="chart-point" cx=${x(p.i)} cy=${y(p.value)} r="3.5">
        <title>${p.day}: ${label(p.value)} ${series.unit === "ms" ? "" : series.unit}</title></circle>`)}
    </svg>
    <p class="muted chart-summary">${summary}</p>
    <details>
      <summary>${series.title} as a table</summary>
      <${Table} caption=${series.title} rowKey=${(r) => r.date} rows=${rows} empty="No runs in this range."
        columns=${[
          { label: "Day (UTC)", render: (r) => r.date },
          { label: series.unit === "ms" ? "Latency" : series.unit[0].toUpperCase() + series.unit.slice(1), render: (r) => label(Number(r[series.key])) },
        ]} />
    </details>`;
}

// --- conversations -----------------------------------------------------------------------------

function who(row) {
  if (row.from_account_id) return `${row.from_account_name || "account"} (debugger)`;
  return row.from_end_user_session_id || "anonymous";
}

function Feedback({ stats }) {
  if (!stats) return "";
  return html`<span data-testid="feedback-stats">${stats.like} like${stats.like === 1 ? "" : "s"}, ${stats.dislike} dislike${stats.dislike === 1 ? "" : "s"}</span>`;
}

function Conversations({ app, completion, filters, page, setPage, open, setOpen }) {
  const path = `/apps/${app.id}/${completion ? "completion" : "chat"}-conversations`;
  const list = useResource(path, {
    page,
    limit: 20,
    keyword: filters.keyword || undefined,
    start: filters.start || undefined,
    end: filters.end || undefined,
  });
  const chatColumns = [
    { label: "Started", render: (c) => formatTime(c.created_at) },
    { label: "By", render: who },
    { label: "First message", render: (c) => c.summary || html`<span class="muted">(none)</span>` },
    { label: "Messages", render: (c) => c.message_count },
    { label: "Feedback", render: (c) => html`<${Feedback} stats=${c.user_feedback_stats} />` },
    {
      label: "Details",
      render: (c) => html`<${Button} aria-expanded=${open === c.id ? "true" : "false"}
        aria-label=${`${open === c.id ? "Hide" : "Show"} the messages of the conversation started ${formatTime(c.created_at)}`}
        onClick=${() => setOpen(open === c.id ? null : c.id)}>${open === c.id ? "Hide" : "Show"}<//>`,
    },
  ];
  const completionColumns = [
    { label: "Time", render: (c) => formatTime(c.created_at) },
    { label: "By", render: who },
    {
      label: "Inputs",
      render: (c) => Object.entries((c.message && c.message.inputs) || {}).map(([k, v]) => `${k}: ${v}`).join(" · "),
    },
    { label: "Answer", render: (c) => html`<div class="clip">${c.message ? c.message.answer : ""}</div>` },
    { label: "Feedback", render: (c) => html`<${Feedback} stats=${c.user_feedback_stats} />` },
  ];
  return html`<section aria-labelledby="conversations-title">
    <h2 id="conversations-title">${completion ? "Runs" : "Conversations"}</h2>
    <${Loaded} resource=${list} what="Loading the conversations">${(reply) => html`
      <p class="muted" role="status">${reply.total} ${completion ? "run" : "conversation"}${reply.total === 1 ? "" : "s"} match.</p>
      <div data-testid="conversations">
        <${Table} columns=${completion ? completionColumns : chatColumns} rows=${reply.data}
          empty=${completion ? "No runs in this range." : "No conversations in this range."} />
      </div>
      <nav class="row pager" aria-label="Pages of conversations">
        <${Button} disabled=${page <= 1} onClick=${() => setPage(page - 1)}>Previous page<//>
        <span>Page ${reply.page} of ${Math.max(1, Math.ceil(reply.total / reply.limit))}</span>
        <${Button} disabled=${!reply.has_more} onClick=${() => setPage(page + 1)}>Next page<//>
      </nav>
      ${open && !completion && html`<${Messages} app=${app} conversation=${reply.data.find((c) => c.id === open)} />`}`}
    <//>
  </section>`;
}

function Messages({ app, conversation }) {
  const session = useSession();
  const annotates = atLeast(session, "editor") && app.mode !== "completion";
  const [limit, setLimit] = useState(20);
  const [annotating, setAnnotating] = useState(null);
  const [notice, setNotice] = useState("");
  const messages = useResource(conversation ? `/apps/${app.id}/chat-messages` : null, {
    conversation_id: conversation && conversation.id,
    limit,
  });
  if (!conversation) return null;
  return html`<section class="panel" aria-labelledby="messages-title" data-testid="messages">
    <h3 id="messages-title">Conversation of ${who(conversation)}, started ${formatTime(conversation.created_at)}</h3>
    <${Loaded} resource=${messages} what="Loading the messages">${(reply) => html`
      ${reply.has_more && html`<${Button} onClick=${() => setLimit(Math.min(100, limit + 20))} disabled=${limit >= 100}>Show older messages<//>`}
      <ol class="chat-log messages">
        ${reply.data.map((m) => html`<li key=${m.id} class="logged" data-testid="logged-message">
          <div class="bubble user">${m.query}</div>
          ${m.message_files && m.message_files.length > 0 && html`<p class="meta attached" data-testid="logged-files">Attached: ${m.message_files.map((f, i) => html`${i > 0 && ", "}${f.url
            ? html`<a href=${f.url} target="_blank" rel="noopener noreferrer">${f.filename || f.type}</a>`
            : f.filename || f.type}`)}</p>`}
          <div class="bubble assistant">
            <${Thoughts} thoughts=${m.agent_thoughts} />
            <div>${m.answer}</div>
            ${m.error && html`<p class="error-text">Error: ${m.error}</p>`}
            ${m.annotation && html`<p class="meta" data-testid="logged-annotation"><strong>Annotated answer:</strong> ${m.annotation.content}</p>`}
            ${m.annotation_hit_history && html`<p class="meta muted">Answered by an annotation.</p>`}
            <dl class="meta answer-meta">
              <div><dt>Tokens</dt> <dd data-testid="logged-tokens">${m.message_tokens} prompt + ${m.answer_tokens} answer</dd></div>
              <div><dt>Latency</dt> <dd>${formatMs(m.provider_response_latency * 1000)}</dd></div>
              <div><dt>Feedback</dt> <dd data-testid="logged-feedback">${m.feedbacks.length ? m.feedbacks.map((f) => `${f.rating} (${f.from_source})`).join(", ") : "none"}</dd></div>
              <div><dt>At</dt> <dd>${formatTime(m.created_at)}</dd></div>
            </dl>
            ${annotates && html`<${Button} aria-label=${`${m.annotation ? "Edit the annotation of" : "Annotate"} the answer to “${m.query}”`}
              onClick=${() => setAnnotating(m)}>${m.annotation ? "Edit the annotation" : "Annotate"}<//>`}
          </div>
        </li>`)}
      </ol>`}
    <//>
    <${Notice}>${notice}<//>
    <${Dialog} title="Annotate this answer" open=${Boolean(annotating)} onClose=${() => setAnnotating(null)}>
      ${annotating && html`<${AnnotationForm} app=${app} messageId=${annotating.id} question=${annotating.query}
        answer=${annotating.annotation ? annotating.annotation.content : annotating.answer}
        onDone=${(saved) => {
          if (saved) {
            setNotice("Saved the annotation: this question gets that answer once the annotation reply is on.");
            messages.reload();
          }
          setAnnotating(null);
        }} />`}
    <//>
  </section>`;
}
