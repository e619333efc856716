// The page a human-input form's link opens (`/form/{token}`): the form a paused workflow run
// waits on, read and answered through the web tier by its token alone (no passport: the token
// is the secret, as in Dify). Its app's site gives the page its title; an answered, expired or
// unknown form is said in the server's words.
import { html, useEffect, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { errorOf, requestId } from "../api.js";
import { HumanForm } from "../human_form.js";
import { ErrorBox, Loading } from "../ui.js";

async function call(method, token, body) {
  const id = requestId();
  const response = await fetch(`/api/form/human_input/${encodeURIComponent(token)}`, {
    method,
    headers: { "x-request-id": id, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!response.ok) throw await errorOf(response, id);
  return response.json();
}

export function FormPage({ token }) {
  const [state, setState] = useState({ form: null, error: null });
  const [answered, setAnswered] = useState(null);
  useEffect(() => {
    call("GET", token).then((form) => setState({ form, error: null }), (error) => setState({ form: null, error }));
  }, [token]);
  const site = state.form && state.form.site;
  useEffect(() => { document.title = site && site.title ? `${site.title}: your answer` : "Your answer is needed"; }, [site]);
  if (state.error) {
    return html`<main id="main" class="webapp unavailable">
      <h1>This form cannot be answered</h1>
      <${ErrorBox} error=${state.error} />
    </main>`;
  }
  if (!state.form) return html`<main id="main" class="webapp"><h1 class="visually-hidden">Loading</h1><${Loading} /></main>`;
  const actions = state.form.user_actions || [];
  return html`<div class="webapp-shell">
    <header class="site-header">
      ${site && site.icon_type === "emoji" && site.icon && html`<span class="site-icon" aria-hidden="true" style=${{ background: site.icon_background || "transparent" }}>${site.icon}</span>`}
      <div><h1>${site && site.title ? site.title : "Your answer is needed"}</h1>
        ${site && site.description && html`<p class="site-description">${site.description}</p>`}</div>
    </header>
    <main id="main" class="webapp kind-form">
      ${answered
        ? html`<section class="panel" role="status"><h2>Thank you</h2>
            <p>Your answer (${(actions.find((a) => a.id === answered) || {}).title || answered}) was sent: the workflow goes on.</p></section>`
        : html`<${HumanForm} form=${state.form} submit=${(action, inputs) => call("POST", token, { inputs, action })} onAnswered=${setAnswered} />`}
    </main>
  </div>`;
}
