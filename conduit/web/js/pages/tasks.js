// An app's async runs and their callbacks: the tasks (status filter, each one's JSON), the
// callback deliveries (status filter with dead letters, each one's attempts, redeliver), and
// the webhook secret (shown on request; rotating it shows the new one once).
import { html, useEffect, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { api, invalidate, useResource } from "../api.js";
import { AppPage } from "../app_nav.js";
import { Button, Dialog, ErrorBox, Field, Loaded, Notice, PageHeader, Table, formatMs, formatTime, useAction } from "../ui.js";

const TASK_FILTER = [
  { value: "", label: "All" }, { value: "pending", label: "Pending" }, { value: "running", label: "Running" },
  { value: "succeeded", label: "Succeeded" }, { value: "failed", label: "Failed" }, { value: "stopped", label: "Stopped" },
];
const DELIVERY_FILTER = [
  { value: "", label: "All" }, { value: "pending", label: "Pending" },
  { value: "delivered", label: "Delivered" }, { value: "dead", label: "Dead letters" },
];
const DELIVERY_WORDS = { pending: "pending", delivered: "delivered", dead: "dead letter", not_sent: "not sent yet" };

// Reloads `resource` every second while `busy(data)` says something is still moving.
function usePolling(resource, busy) {
  useEffect(() => {
    if (!resource.data || !busy(resource.data)) return undefined;
    const timer = setTimeout(resource.reload, 1000);
    return () => clearTimeout(timer);
  }, [resource.data]);
}

const short = (id) => (id ? id.slice(0, 8) : "");

function Pager({ data, page, setPage, what }) {
  return html`<div class="row">
    ${page > 1 && html`<${Button} onClick=${() => setPage(page - 1)}>Previous ${what}<//>`}
    ${data.has_more && html`<${Button} onClick=${() => setPage(page + 1)}>Next ${what}<//>`}
  </div>`;
}

function Tasks({ app }) {
  const [status, setStatus] = useState("");
  const [page, setPage] = useState(1);
  const tasks = useResource(`/apps/${app.id}/tasks`, { status, page, limit: 20 });
  usePolling(tasks, (d) => d.data.some((t) => t.status === "pending" || t.status === "running" || (t.callback && t.callback.status === "pending")));
  const [shown, setShown] = useState(null);
  const [open, busy, error] = useAction(async (task) => {
    setShown({ id: task.task_id, body: await api.get(`/apps/${app.id}/tasks/${task.task_id}`) });
  });
  return html`<section aria-labelledby="tasks-title">
    <h2 id="tasks-title">Async tasks</h2>
    <p class="muted">Runs submitted with <code>response_mode: "async"</code> (Service API, web app, debugger), newest first.</p>
    <div class="row filters">
      <${Field} label="Task status" as="select" options=${TASK_FILTER} value=${status} onInput=${(v) => { setStatus(v); setPage(1); }} />
      <${Button} onClick=${tasks.reload}>Refresh tasks<//>
    </div>
    <${Loaded} resource=${tasks} what="Loading the tasks">${(data) => html`
      <${Table} caption=${`${data.total} task${data.total === 1 ? "" : "s"}`} rowKey=${(t) => t.task_id}
        empty=${status ? "No task has this status." : "No async task yet."} rows=${data.data}
        columns=${[
          { label: "Task", render: (t) => html`<code title=${t.task_id}>${short(t.task_id)}</code>` },
          { label: "Kind", render: (t) => t.kind },
          { label: "User", render: (t) => t.user || "" },
          { label: "Status", render: (t) => html`<span class=${`status ${t.status}`}>${t.status}</span>${t.error && html`<div class="reason">${t.error}</div>`}` },
          { label: "Created", render: (t) => formatTime(t.created_at) },
          { label: "Finished", render: (t) => formatTime(t.finished_at) },
          { label: "Callback", render: (t) => (t.callback
            ? html`<span class=${`status ${t.callback.status}`}>${DELIVERY_WORDS[t.callback.status] || t.callback.status}</span>
                <div class="muted">${t.callback.attempts} attempt${t.callback.attempts === 1 ? "" : "s"}${t.callback.last_status ? `, last HTTP ${t.callback.last_status}` : ""}</div>`
            : html`<span class="muted">none</span>`) },
          { label: "Details", render: (t) => html`<${Button} busy=${busy} onClick=${() => open(t)} aria-label=${`Task JSON of ${short(t.task_id)}`}>Task JSON<//>` },
        ]} />
      <${Pager} data=${data} page=${page} setPage=${setPage} what="tasks" />`}<//>
    <${ErrorBox} error=${error} />
    ${shown && html`<div class="panel">
      <h3>Task ${shown.id}</h3>
      <pre tabindex="0" aria-label=${`Task ${shown.id} as JSON`}>${JSON.stringify(shown.body, null, 2)}</pre>
      <${Button} onClick=${() => setShown(null)}>Hide task JSON<//>
    </div>`}
  </section>`;
}

function Deliveries({ app }) {
  const base = `/apps/${app.id}/webhook-deliveries`;
  const [status, setStatus] = useState("");
  const [page, setPage] = useState(1);
  const deliveries = useResource(base, { status, page, limit: 20 });
  usePolling(deliveries, (d) => d.data.some((x) => x.status === "pending"));
  const [detail, setDetail] = useState(null);
  const [open, opening, openError] = useAction(async (d) => setDetail((await api.get(`${base}/${d.id}`)).data));
  useEffect(() => { // the attempts shown follow the list as it is polled
    const row = detail && deliveries.data && deliveries.data.data.find((d) => d.id === detail.id);
    if (row && (row.status !== detail.status || row.attempts !== detail.attempts)) open(row);
  }, [deliveries.data]);
  const [redeliver, redelivering, redeliverError] = useAction(async (d) => {
    await api.post(`${base}/${d.id}/redeliver`);
    invalidate(base);
    invalidate(`/apps/${app.id}/tasks`);
    if (detail && detail.id === d.id) setDetail((await api.get(`${base}/${d.id}`)).data);
  });
  return html`<section aria-labelledby="deliveries-title">
    <h2 id="deliveries-title">Callback deliveries</h2>
    <div class="row filters">
      <${Field} label="Delivery status" as="select" options=${DELIVERY_FILTER} value=${status} onInput=${(v) => { setStatus(v); setPage(1); }} />
      <${Button} onClick=${deliveries.reload}>Refresh deliveries<//>
    </div>
    <${ErrorBox} error=${openError || redeliverError} />
    <${Loaded} resource=${deliveries} what="Loading the deliveries">${(data) => html`
      <${Table} caption=${`${data.total} deliver${data.total === 1 ? "y" : "ies"}`}
        empty=${status === "dead" ? "No dead letter: every callback was delivered or is still being tried." : "No callback delivery yet."}
        rows=${data.data}
        columns=${[
          { label: "Task", render: (d) => html`<code title=${d.task_id}>${short(d.task_id)}</code>` },
          { label: "URL", render: (d) => html`<span class="segment-text">${d.url}</span>` },
          { label: "Status", render: (d) => html`<span class=${`status ${d.status}`}>${DELIVERY_WORDS[d.status]}</span>` },
          { label: "Attempts", render: (d) => d.attempts },
          { label: "Last answer", render: (d) => (d.last_error ? d.last_error : d.last_status ? `HTTP ${d.last_status}` : "") },
          { label: "Created", render: (d) => formatTime(d.created_at) },
          { label: "Actions", render: (d) => html`<div class="row">
            <${Button} busy=${opening} onClick=${() => open(d)} aria-label=${`Attempts of the delivery of task ${short(d.task_id)}`}>Attempts<//>
            ${d.status !== "pending" && html`<${Button} kind="primary" busy=${redelivering} onClick=${() => redeliver(d)}
              aria-label=${`Redeliver the callback of task ${short(d.task_id)}`}>Redeliver<//>`}
          </div>` },
        ]} />
      <${Pager} data=${data} page=${page} setPage=${setPage} what="deliveries" />`}<//>
    ${detail && html`<div class="panel">
      <h3>Attempts of the callback of task ${short(detail.task_id)} (${DELIVERY_WORDS[detail.status]})</h3>
      <${Table} rowKey=${(a) => a.number} empty="No attempt yet." rows=${detail.history} columns=${[
        { label: "#", render: (a) => a.number },
        { label: "Started", render: (a) => formatTime(a.started_at) },
        { label: "Took", render: (a) => formatMs(a.duration_ms) },
        { label: "Answer", render: (a) => (a.status_code ? `HTTP ${a.status_code}` : "no answer") },
        { label: "Error", render: (a) => a.error || "" },
      ]} />
      <h4>Payload</h4>
      <pre tabindex="0" aria-label="Callback payload">${JSON.stringify(detail.payload, null, 2)}</pre>
      <${Button} onClick=${() => setDetail(null)}>Hide attempts<//>
    </div>`}
  </section>`;
}

function Secret({ app }) {
  const path = `/apps/${app.id}/webhook-secret`;
  const [secret, setSecret] = useState(null);
  const [confirming, setConfirming] = useState(false);
  const [fresh, setFresh] = useState(null);
  const [show, showing, showError] = useAction(async () => setSecret(await api.get(path)));
  const [rotate, rotating, rotateError] = useAction(async () => {
    const rotated = await api.post(`${path}/rotate`);
    setConfirming(false);
    setSecret(null);
    setFresh(rotated);
  });
  return html`<section class="panel" aria-labelledby="secret-title">
    <h2 id="secret-title">Webhook secret</h2>
    <p class="muted">Callbacks are signed with it (<code>X-Dify-Signature-V1</code> and <code>webhook-signature</code>); verify them with <code>conduit.webhooks.verify</code>.</p>
    <${ErrorBox} error=${showError} />
    ${secret && html`<p>Current secret: <code class="secret" id="current-secret">${secret.secret}</code></p>
      ${secret.previous_secret_valid_until && html`<p class="muted">The previous secret still verifies until ${formatTime(secret.previous_secret_valid_until)}.</p>`}`}
    <div class="row">
      ${secret ? html`<${Button} onClick=${() => setSecret(null)}>Hide secret<//>` : html`<${Button} busy=${showing} onClick=${show}>Show secret<//>`}
      <${Button} kind="danger" onClick=${() => setConfirming(true)}>Rotate secret<//>
    </div>
    <${Dialog} title="Rotate the webhook secret?" open=${confirming} onClose=${() => setConfirming(false)}>
      <p>A new secret signs the callbacks from now on; the current one keeps verifying for a grace period, then stops.</p>
      <${ErrorBox} error=${rotateError} />
      <div class="row">
        <${Button} kind="danger" busy=${rotating} onClick=${rotate}>Rotate<//>
        <${Button} onClick=${() => setConfirming(false)}>Cancel<//>
      </div>
    <//>
    <${Dialog} title="The new webhook secret" open=${Boolean(fresh)} onClose=${() => setFresh(null)}>
      ${fresh && html`<${Notice}>Copy it now: this dialog shows it once.<//>
        <p>New secret: <code class="secret" id="new-secret">${fresh.secret}</code></p>
        ${fresh.previous_secret_valid_until && html`<p class="muted">The previous secret verifies until ${formatTime(fresh.previous_secret_valid_until)}.</p>`}`}
      <${Button} kind="primary" onClick=${() => setFresh(null)}>Done<//>
    <//>
  </section>`;
}

export default function TasksPage({ params }) {
  return html`<${AppPage} appId=${params.appId} current="/tasks">${(app) => html`<div>
    <${PageHeader} title=${`Async tasks of ${app.name}`} />
    <${Tasks} app=${app} />
    <${Deliveries} app=${app} />
    <${Secret} app=${app} />
  </div>`}<//>`;
}
