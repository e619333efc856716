// Small shared pieces every page uses: labelled fields, buttons, the error box (the envelope's
// message in words, with its request id), tables, a loading line, a dialog and time formats.
import { html, useEffect, useRef, useState } from "../vendor/htm-preact-3.1.1.module.js";

export { html };

let fieldIds = 0;
function useId(prefix) {
  const ref = useRef(null);
  if (ref.current === null) ref.current = `${prefix}-${++fieldIds}`;
  return ref.current;
}

// A labelled input; `as` is "input" (default), "textarea" or "select" (give `options`).
export function Field({ label, as = "input", value, onInput, options = [], hint, ...rest }) {
  const id = useId("field");
  const hintId = hint ? `${id}-hint` : undefined;
  const change = (e) => onInput && onInput(e.currentTarget.type === "checkbox" ? e.currentTarget.checked : e.currentTarget.value);
  let control;
  if (as === "textarea") {
    control = html`<textarea id=${id} value=${value ?? ""} onInput=${change} aria-describedby=${hintId} ...${rest} />`;
  } else if (as === "select") {
    control = html`<select id=${id} value=${value ?? ""} onChange=${change} aria-describedby=${hintId} ...${rest}>
      ${options.map((o) => (typeof o === "string" ? { value: o, label: o } : o))
        .map((o) => html`<option value=${o.value} selected=${o.value === value}>${o.label}</option>`)}
    </select>`;
  } else if (rest.type === "checkbox") {
    return html`<div class="field checkbox">
      <input id=${id} checked=${Boolean(value)} onChange=${change} aria-describedby=${hintId} ...${rest} />
      <label for=${id}>${label}</label>
      ${hint && html`<small id=${hintId}>${hint}</small>`}
    </div>`;
  } else {
    control = html`<input id=${id} value=${value ?? ""} onInput=${change} aria-describedby=${hintId} ...${rest} />`;
  }
  return html`<div class="field">
    <label for=${id}>${label}</label>
    ${control}
    ${hint && html`<small id=${hintId}>${hint}</small>`}
  </div>`;
}

export function Button({ kind = "secondary", busy = false, children, ...rest }) {
  return html`<button class=${`button ${kind}`} disabled=${busy || rest.disabled} aria-busy=${busy ? "true" : undefined} ...${rest}>
    ${children}
  </button>`;
}

// The error of a failed call, in the server's words; nothing when there is none.
export function ErrorBox({ error, onRetry }) {
  if (!error) return null;
  return html`<div class="error" role="alert">
    <strong>${error.status ? `Error ${error.status}` : "Error"}${error.code ? ` (${error.code})` : ""}: </strong>
    <span>${error.message || String(error)}</span>
    ${error.requestId && html`<small class="request-id"> request ${error.requestId}</small>`}
    ${onRetry && html` <${Button} onClick=${onRetry}>Retry<//>`}
  </div>`;
}

export function Notice({ children }) {
  return children ? html`<div class="notice" role="status">${children}</div>` : null;
}

export function Loading({ what = "Loading" }) {
  return html`<p class="loading" role="status" aria-live="polite">${what}…</p>`;
}

// A resource's states: loading, error (with retry), or `children(data)`.
export function Loaded({ resource, children, what }) {
  if (resource.error && resource.data === undefined) {
    return html`<${ErrorBox} error=${resource.error} onRetry=${resource.reload} />`;
  }
  if (resource.data === undefined) return html`<${Loading} what=${what} />`;
  return html`${resource.error && html`<${ErrorBox} error=${resource.error} onRetry=${resource.reload} />`}${children(resource.data)}`;
}

// columns: [{label, render(row)}]; `empty` says what an empty table means.
export function Table({ caption, columns, rows, empty = "Nothing here yet.", rowKey = (r) => r.id }) {
  if (!rows || !rows.length) return html`<p class="empty">${empty}</p>`;
  return html`<table>
    ${caption && html`<caption>${caption}</caption>`}
    <thead><tr>${columns.map((c) => html`<th scope="col">${c.label}</th>`)}</tr></thead>
    <tbody>${rows.map((row) => html`<tr key=${rowKey(row)}>${columns.map((c) => html`<td>${c.render(row)}</td>`)}</tr>`)}</tbody>
  </table>`;
}

// A modal dialog (the native <dialog>: focus trapped, Escape closes).
export function Dialog({ title, open, onClose, children }) {
  const ref = useRef(null);
  const titleId = useId("dialog");
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (open && !dialog.open) dialog.showModal();
    if (!open && dialog.open) dialog.close();
  }, [open]);
  return html`<dialog ref=${ref} aria-labelledby=${titleId} onClose=${onClose} onCancel=${onClose}>
    <h2 id=${titleId}>${title}</h2>
    ${open && children}
  </dialog>`;
}

// Runs an async action with busy/error state: [run, busy, error, setError].
export function useAction(action) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const run = async (...args) => {
    setBusy(true);
    setError(null);
    try {
      return await action(...args);
    } catch (e) {
      setError(e);
      return undefined;
    } finally {
      setBusy(false);
    }
  };
  return [run, busy, error, setError];
}

// A time as `2026-12-05 06:01:30`, local. Not toLocaleString: its first call in a page loads
// the browser's locale data, 15-35 ms of a first render on a small machine.
export function formatTime(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const date = new Date(typeof seconds === "number" ? seconds * 1000 : seconds);
  if (Number.isNaN(date.getTime())) return String(seconds);
  const two = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ` +
    `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
}

export function formatMs(ms) {
  if (ms === null || ms === undefined) return "";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

export function PageHeader({ title, children }) {
  useEffect(() => { document.title = `${title} · Conduit`; }, [title]);
  return html`<header class="page-header"><h1>${title}</h1><div class="actions">${children}</div></header>`;
}
