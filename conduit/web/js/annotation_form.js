// The form that writes or edits one annotation of an app: from the annotations page, or from
// a message of the logs ("annotate this answer", with its `message_id`).
import { html, useState } from "../vendor/htm-preact-3.1.1.module.js";
import { api, invalidate } from "./api.js";
import { Button, ErrorBox, Field, useAction } from "./ui.js";

export function AnnotationForm({ app, annotation, messageId, question: asked = "", answer: given = "", onDone }) {
  const [question, setQuestion] = useState(annotation ? annotation.question : asked);
  const [answer, setAnswer] = useState(annotation ? annotation.answer : given);
  const [save, saving, error] = useAction(async () => {
    const body = { question, answer, ...(messageId ? { message_id: messageId } : {}) };
    const saved = annotation
      ? await api.put(`/apps/${app.id}/annotations/${annotation.id}`, body)
      : await api.post(`/apps/${app.id}/annotations`, body);
    invalidate(`/apps/${app.id}/annotations`);
    onDone(saved);
  });
  return html`<form onSubmit=${(e) => { e.preventDefault(); save(); }}>
    <${Field} label="Question" as="textarea" rows="2" required value=${question} onInput=${setQuestion} />
    <${Field} label="Answer" as="textarea" rows="5" required value=${answer} onInput=${setAnswer} />
    <${ErrorBox} error=${error} />
    <div class="row">
      <${Button} kind="primary" type="submit" busy=${saving}>Save the annotation<//>
      <${Button} type="button" onClick=${() => onDone(null)}>Cancel<//>
    </div>
  </form>`;
}
