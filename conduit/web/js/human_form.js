// A human-input form a paused workflow run waits on (Dify's `human_input_required`): its
// content (the run's values filled in), its fields with their defaults, and one button per
// action. `submit(action, values)` answers it (the console's, the Service API's or the web
// tier's route); `onAnswered(action)` follows. An error is shown in the server's words and the
// form stays for another try, but a 412 (answered elsewhere, or out of time): `onAnswered(null)`,
// for the page to follow the run as it is now.
import { html, useState } from "../vendor/htm-preact-3.1.1.module.js";
import { Button, ErrorBox, Field, formatTime, useAction } from "./ui.js";

const KINDS = { primary: "primary", accent: "primary", ghost: "secondary", default: "secondary" };

function defaults(form) {
  const values = {};
  for (const field of form.inputs || []) {
    const given = (form.resolved_default_values || {})[field.output_variable_name];
    const options = (field.option_source && field.option_source.value) || [];
    values[field.output_variable_name] = given === undefined || given === null
      ? (field.type === "select" ? String(options[0] ?? "") : "")
      : typeof given === "string" ? given : JSON.stringify(given);
  }
  return values;
}

// The content as shown: where an answer goes (`{{#$output.<field>#}}`), the field's name.
const shown = (content) => content.replace(/\{\{#\$output\.([A-Za-z_][A-Za-z0-9_]*)#\}\}/g, "[$1]");

export function HumanForm({ form, submit, onAnswered }) {
  const [values, setValues] = useState(() => defaults(form));
  const [chosen, setChosen] = useState(null);
  const [answer, busy, error] = useAction(async (action) => {
    setChosen(action);
    try {
      await submit(action, values);
    } catch (failure) {
      if (failure.status === 412 && onAnswered) {
        onAnswered(null);
        return;
      }
      throw failure;
    }
    if (onAnswered) onAnswered(action);
  });
  const actions = form.actions || form.user_actions || [];
  const titleId = `form-${form.form_id || form.node_id || "human"}`;
  const contentId = `${titleId}-content`;
  return html`<form class="panel human-form" aria-labelledby=${titleId} aria-describedby=${form.form_content ? contentId : undefined} onSubmit=${(e) => e.preventDefault()}>
    <h3 id=${titleId}>${form.node_title || "Your input is needed"}</h3>
    ${form.form_content && html`<div class="form-content" id=${contentId}>${shown(form.form_content)}</div>`}
    ${(form.inputs || []).map((field) => {
      const name = field.output_variable_name;
      const options = ((field.option_source && field.option_source.value) || []).map(String);
      const set = (value) => setValues((v) => ({ ...v, [name]: value }));
      if (field.type === "select") return html`<${Field} key=${name} label=${name} as="select" options=${options} value=${values[name]} onInput=${set} />`;
      if (field.type === "paragraph") return html`<${Field} key=${name} label=${name} as="textarea" rows="3" value=${values[name]} onInput=${set} />`;
      return html`<${Field} key=${name} label=${name} value=${values[name]} onInput=${set} />`;
    })}
    <${ErrorBox} error=${error} />
    <div class="row">
      ${actions.map((action) => html`<${Button} key=${action.id} type="button"
        kind=${KINDS[action.button_style] || "secondary"} busy=${busy && chosen === action.id}
        disabled=${busy} onClick=${() => answer(action.id)}>${action.title}<//>`)}
    </div>
    ${form.expiration_time && html`<p class="muted">Answer by ${formatTime(form.expiration_time)}.</p>`}
  </form>`;
}
