// One app's settings: its name and description (`PUT /apps/{id}`) and, for chat, agent-chat
// and completion apps, its model config (`GET/POST /apps/{id}/model-config`): the model (from
// the workspace's model providers), the prompt, the opening statement, suggested questions,
// memory and the feature switches. The server validates; its message is shown as it is.
import { html, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { api, invalidate, useResource } from "../api.js";
import { AppPage } from "../app_nav.js";
import { href } from "../router.js";
import { Button, ErrorBox, Field, Loaded, Notice, PageHeader, useAction } from "../ui.js";

const CONFIG_MODES = ["chat", "completion", "agent-chat"];
const CHAT_MODES = ["chat", "agent-chat"];

function Details({ app, reload }) {
  const [name, setName] = useState(app.name);
  const [description, setDescription] = useState(app.description || "");
  const [saved, setSaved] = useState(false);
  const [save, busy, error] = useAction(async () => {
    setSaved(false);
    await api.put(`/apps/${app.id}`, { name, description });
    invalidate("/apps?"); // the lists; this app is read again with its old value on screen
    reload();
    setSaved(true);
  });
  return html`<section class="panel" aria-labelledby="details-title">
    <h2 id="details-title">Details</h2>
    <form onSubmit=${(e) => { e.preventDefault(); save(); }}>
      <${Field} label="App name" required value=${name} onInput=${setName} />
      <${Field} label="Description" as="textarea" value=${description} onInput=${setDescription} />
      <${ErrorBox} error=${error} />
      ${saved && html`<${Notice}>Details saved.<//>`}
      <${Button} kind="primary" type="submit" busy=${busy}>Save details<//>
    </form>
  </section>`;
}

function Questions({ items, onChange }) {
  const set = (i, value) => onChange(items.map((q, j) => (j === i ? value : q)));
  return html`<fieldset class="list-editor">
    <legend>Suggested questions</legend>
    ${items.length === 0 && html`<p class="muted">None: end users start with an empty box.</p>`}
    ${items.map((q, i) => html`<div class="row" key=${i}>
      <${Field} label=${`Question ${i + 1}`} value=${q} onInput=${(v) => set(i, v)} />
      <div class="field"><${Button} type="button" onClick=${() => onChange(items.filter((_, j) => j !== i))}
        aria-label=${`Remove question ${i + 1}`}>Remove<//></div>
    </div>`)}
    <${Button} type="button" onClick=${() => onChange([...items, ""])} disabled=${items.length >= 20}>Add a question<//>
  </fieldset>`;
}

// The model select's value: "default" or a workspace provider's reference ("workspace:<id>").
function providerOptions(providers, current) {
  const options = [{ value: "default", label: "Workspace default (or the server's model)" }];
  for (const p of providers) options.push({ value: p.reference, label: `${p.name}${p.is_default ? " (default)" : ""}` });
  if (current && !options.some((o) => o.value === current)) options.push({ value: current, label: current });
  return options;
}

function ModelConfig({ app, config, providers, saved, setSaved }) {
  const chat = CHAT_MODES.includes(app.mode);
  const model = config.model || {};
  const [provider, setProvider] = useState(model.provider || "default");
  const [modelName, setModelName] = useState(model.name || "");
  const [prompt, setPrompt] = useState(config.pre_prompt || "");
  const [opening, setOpening] = useState(config.opening_statement || "");
  const [questions, setQuestions] = useState(config.suggested_questions || []);
  const win = (config.memory && config.memory.window) || {};
  const [memoryOn, setMemoryOn] = useState(Boolean(win.enabled));
  const [memorySize, setMemorySize] = useState(String(win.size ?? 10));
  const [followUps, setFollowUps] = useState(Boolean(config.suggested_questions_after_answer && config.suggested_questions_after_answer.enabled));
  const [moreLikeThis, setMoreLikeThis] = useState(Boolean(config.more_like_this && config.more_like_this.enabled));
  const on = (name) => Boolean(config[name] && config[name].enabled);
  const [listens, setListens] = useState(on("speech_to_text"));
  const [speaks, setSpeaks] = useState(on("text_to_speech"));
  const [voice, setVoice] = useState((config.text_to_speech && config.text_to_speech.voice) || "");
  const chosen = providers.find((p) => p.reference === provider);
  const [save, busy, error] = useAction(async () => {
    setSaved(false);
    const next = { ...config, pre_prompt: prompt };
    const picked = { ...model, provider };
    if (modelName.trim()) picked.name = modelName.trim(); else delete picked.name;
    next.model = picked;
    if (chat) {
      next.opening_statement = opening;
      next.suggested_questions = questions;
      const size = Number(memorySize);
      next.memory = { ...(config.memory || {}), window: { enabled: memoryOn, size: Number.isInteger(size) && memorySize.trim() !== "" ? size : memorySize } };
      next.suggested_questions_after_answer = { ...(config.suggested_questions_after_answer || {}), enabled: followUps };
    } else {
      next.more_like_this = { ...(config.more_like_this || {}), enabled: moreLikeThis };
    }
    next.speech_to_text = { ...(config.speech_to_text || {}), enabled: listens };
    const spoken = { ...(config.text_to_speech || {}), enabled: speaks };
    if (voice.trim()) spoken.voice = voice.trim(); else delete spoken.voice;
    next.text_to_speech = spoken;
    await api.post(`/apps/${app.id}/model-config`, next);
    setSaved(true);
    invalidate(`/apps/${app.id}/model-config`); // the form is made again from what is stored
  });
  return html`<section class="panel" aria-labelledby="config-title">
    <h2 id="config-title">Model and prompt</h2>
    <form onSubmit=${(e) => { e.preventDefault(); save(); }}>
      <div class="row">
        <${Field} label="Model provider" as="select" value=${provider} onInput=${(v) => { setProvider(v); setModelName(""); }}
          options=${providerOptions(providers, model.provider)} />
        ${chosen && chosen.models.length
          ? html`<${Field} label="Model" as="select" value=${modelName} onInput=${setModelName}
              options=${[{ value: "", label: "Choose a model" }, ...chosen.models.map((m) => ({ value: m, label: m }))]} />`
          : html`<${Field} label="Model" value=${modelName} onInput=${setModelName}
              hint=${chosen ? "Any model this endpoint serves" : "Empty: the provider's default model"} />`}
      </div>
      ${providers.length === 0 && html`<p class="muted">This workspace has no model providers: <a href=${href("/providers")}>add one</a>, or use the server's model.</p>`}
      <${Field} label=${chat ? "Instructions (pre-prompt)" : "Prompt"} as="textarea" rows="6" value=${prompt} onInput=${setPrompt}
        hint="{{variable}} names an input of the app's form." />
      ${chat && html`
        <${Field} label="Opening statement" as="textarea" value=${opening} onInput=${setOpening} />
        <${Questions} items=${questions} onChange=${setQuestions} />
        <fieldset>
          <legend>Memory</legend>
          <${Field} label="Remember earlier turns" type="checkbox" value=${memoryOn} onInput=${setMemoryOn} />
          <${Field} label="Window size (turns, 1–100)" inputmode="numeric" value=${memorySize} onInput=${setMemorySize} disabled=${!memoryOn} />
        </fieldset>
        <${Field} label="Suggest follow-up questions after each answer" type="checkbox" value=${followUps} onInput=${setFollowUps} />`}
      ${!chat && html`<${Field} label="More like this (end users ask for another answer)" type="checkbox" value=${moreLikeThis} onInput=${setMoreLikeThis} />`}
      <fieldset>
        <legend>Speech (an OpenAI-compatible provider's; the local model does none)</legend>
        <${Field} label="Speech to text (end users record a question)" type="checkbox" value=${listens} onInput=${setListens} />
        <${Field} label="Text to speech (answers read aloud)" type="checkbox" value=${speaks} onInput=${setSpeaks} />
        <${Field} label="Voice" value=${voice} onInput=${setVoice} disabled=${!speaks} hint="Empty: the server's default voice (CONDUIT_MODEL_TEXT_TO_SPEECH_VOICE)" />
      </fieldset>
      <${ErrorBox} error=${error} />
      ${saved && html`<${Notice}>Model config saved.<//>`}
      <${Button} kind="primary" type="submit" busy=${busy}>Save model config<//>
    </form>
  </section>`;
}

function Config({ app }) {
  const config = useResource(`/apps/${app.id}/model-config`);
  const providers = useResource("/workspaces/current/model-providers");
  const [saved, setSaved] = useState(false);
  // The form is made from what is stored, and made again only when that changes (a save):
  // keyed by the stored content, decided in the render itself, so a revalidation that
  // brings the same config back never wipes what is being typed.
  const shown = config.data ? JSON.stringify(config.data.data) : "";
  if (!CONFIG_MODES.includes(app.mode)) {
    return html`<section class="panel"><h2>Model and prompt</h2>
      <p>A ${app.mode} app is driven by its workflow: edit it on the <a href=${href(`/apps/${app.id}/workflow`)}>Workflow</a> page.</p>
    </section>`;
  }
  return html`<${Loaded} resource=${config} what="Loading the model config">${(c) => html`
    <${Loaded} resource=${providers} what="Loading the model providers">${(p) => html`
      <${ModelConfig} key=${shown} app=${app} config=${c.data} providers=${p.data} saved=${saved} setSaved=${setSaved} />`}<//>`}<//>`;
}

export default function AppSettings({ params }) {
  return html`<${AppPage} appId=${params.appId} current="">${(app, reload) => html`
    <${PageHeader} title=${`${app.name}: settings`} />
    <${Details} key=${app.id} app=${app} reload=${reload} />
    <${Config} app=${app} />`}<//>`;
}
