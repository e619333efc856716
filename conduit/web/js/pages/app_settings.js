// One app's settings: its name and description (`PUT /apps/{id}`) and, for chat, agent-chat
// and completion apps, its model config (`GET/POST /apps/{id}/model-config`): the model (from
// the workspace's model providers), the prompt, the opening statement, suggested questions,
// memory and the feature switches, its knowledge (the datasets it searches and how their
// passages are ordered together) and, for an agent-chat app, its agent (the tools it may use,
// its strategy and rounds). The server validates; its message is shown as it is.
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

// The app's knowledge (its model config's `dataset_configs`, Dify's shape): the datasets it
// searches before each answer, how many passages it keeps, the lowest score, and how the
// datasets' passages are ordered together (each dataset's own scores, a rerank model, or one
// weighted score of meaning and keywords).
const ORDERS = [
  { value: "own", label: "By each dataset's own scores" },
  { value: "reranking_model", label: "By a rerank model" },
  { value: "weighted_score", label: "By a weighted score of meaning and keywords" },
];

function storedOrder(found) {
  if (found.reranking_enable === false || found.reranking_enabled === false) return "own";
  if (found.reranking_mode === "weighted_score") return "weighted_score";
  const names = found.reranking_model || {};
  return names.reranking_provider_name && names.reranking_model_name ? "reranking_model" : "own";
}

function Knowledge({ app, config, datasets, rerankers, saved, setSaved }) {
  const found = config.dataset_configs || {};
  const entries = ((found.datasets || {}).datasets || []).map((e) => e.dataset || {});
  const [chosen, setChosen] = useState(entries.filter((d) => d.enabled !== false).map((d) => d.id));
  // Entries switched off (Dify's `enabled: false`, e.g. from an import) are kept as they are.
  const switchedOff = entries.filter((d) => d.enabled === false && !chosen.includes(d.id));
  const [topK, setTopK] = useState(String(found.top_k ?? 4));
  const [thresholdOn, setThresholdOn] = useState(Boolean(found.score_threshold_enabled));
  const [threshold, setThreshold] = useState(String(found.score_threshold ?? 0.5));
  const [order, setOrder] = useState(storedOrder(found));
  const names = found.reranking_model || {};
  const models = rerankers.flatMap((p) => p.models.map((m) => ({
    value: JSON.stringify([p.provider, m.model]), label: `${m.model} (${p.label.en_US})`,
  })));
  const current = names.reranking_model_name ? JSON.stringify([names.reranking_provider_name, names.reranking_model_name]) : "";
  // The stored model stays a choice even when the workspace no longer offers it (the server
  // says so on save), so the select never shows one model while holding another.
  if (current && !models.some((m) => m.value === current)) {
    models.push({ value: current, label: `${names.reranking_model_name} (no longer offered)` });
  }
  const [model, setModel] = useState(current || (models[0] || {}).value || "");
  const weights = found.weights || {};
  const [vectorWeight, setVectorWeight] = useState(String((weights.vector_setting || {}).vector_weight ?? 0.7));
  const number = (text) => (text.trim() !== "" && Number.isFinite(Number(text)) ? Number(text) : text);
  const toggle = (id, on) => setChosen(on ? [...chosen, id] : chosen.filter((c) => c !== id));
  const [save, busy, error] = useAction(async () => {
    setSaved(false);
    const next = {
      ...found,
      retrieval_model: "multiple",
      datasets: { datasets: [
        ...chosen.map((id) => ({ dataset: { enabled: true, id } })),
        ...switchedOff.map((d) => ({ dataset: d })),
      ] },
      top_k: number(topK),
      score_threshold_enabled: thresholdOn,
      score_threshold: thresholdOn ? number(threshold) : (found.score_threshold ?? null),
      reranking_enable: order !== "own",
      reranking_mode: order === "own" ? (found.reranking_mode || "reranking_model") : order,
    };
    if (order === "reranking_model") {
      const [provider, name] = model ? JSON.parse(model) : ["", ""];
      next.reranking_model = { reranking_provider_name: provider, reranking_model_name: name };
    }
    if (order === "weighted_score") {
      const vector = number(vectorWeight);
      next.weights = {
        ...weights,
        vector_setting: { ...(weights.vector_setting || {}), vector_weight: vector },
        keyword_setting: { ...(weights.keyword_setting || {}),
          keyword_weight: typeof vector === "number" ? Math.round((1 - vector) * 100) / 100 : vector },
      };
    }
    delete next.reranking_enabled; // (Dify's back end's name; the console writes reranking_enable)
    await api.post(`/apps/${app.id}/model-config`, { ...config, dataset_configs: next });
    setSaved(true);
    invalidate(`/apps/${app.id}/model-config`);
  });
  const known = new Set(datasets.map((d) => d.id));
  const missing = chosen.filter((id) => !known.has(id));
  return html`<section class="panel" aria-labelledby="knowledge-title">
    <h2 id="knowledge-title">Knowledge</h2>
    <form onSubmit=${(e) => { e.preventDefault(); save(); }}>
      <fieldset>
        <legend>Datasets searched before each answer</legend>
        ${datasets.length === 0 && html`<p class="muted">This workspace has no datasets: <a href=${href("/datasets")}>create one</a>.</p>`}
        ${datasets.map((d) => html`<${Field} key=${d.id} type="checkbox" label=${`${d.name} (${d.provider === "external" ? "external" : d.indexing_technique || "no documents yet"})`}
          value=${chosen.includes(d.id)} onInput=${(on) => toggle(d.id, on)} />`)}
        ${missing.length > 0 && html`<p class="muted">${missing.length} more not listed here (not among this workspace's first 100 datasets); they stay chosen.</p>`}
      </fieldset>
      <div class="row">
        <${Field} label="Passages kept (top K, 1–10)" inputmode="numeric" value=${topK} onInput=${setTopK} />
        <${Field} label="Lowest score kept" inputmode="decimal" value=${threshold} onInput=${setThreshold} disabled=${!thresholdOn}
          hint="From 0 to 1, on the scores the passages are ordered by" />
      </div>
      <${Field} label="Keep only passages with at least that score" type="checkbox" value=${thresholdOn} onInput=${setThresholdOn} />
      <${Field} label="Order of the datasets' passages" as="select" value=${order} onInput=${setOrder} options=${ORDERS} />
      ${order === "reranking_model" && (models.length
        ? html`<${Field} label="Rerank model" as="select" value=${model} onInput=${setModel} options=${models}
            hint="It judges every dataset's passages against the question at once" />`
        : html`<p class="muted">This workspace has no rerank model: add one to a <a href=${href("/providers")}>model provider</a>'s rerank models.</p>`)}
      ${order === "weighted_score" && html`<${Field} label="Weight of meaning (0–1; keywords get the rest)" inputmode="decimal"
          value=${vectorWeight} onInput=${setVectorWeight} hint="The datasets with embeddings must share one embedding model" />`}
      <${ErrorBox} error=${error} />
      ${saved && html`<${Notice}>Knowledge saved.<//>`}
      <${Button} kind="primary" type="submit" busy=${busy}>Save knowledge<//>
    </form>
  </section>`;
}

// An agent-chat app's agent (its model config's `agent_mode`, Dify's shape): the tools it may
// call — built-in ones (with the settings the app gives them, e.g. current_time's time zone)
// and the workspace's custom API tools (the Tools page) — how the model asks for them and how
// many rounds it may take.
const STRATEGIES = [
  { value: "function_call", label: "Function calling (the model's own tool calls)" },
  { value: "react", label: "ReAct (tools described in the prompt; any model)" },
];

// Dify 1.x names a built-in provider `langgenius/<id>/<id>`: the same provider as `<id>`.
const providerKey = (id) => (String(id || "").startsWith("langgenius/") ? String(id).split("/").pop() : String(id || ""));
const toolKey = (providerId, name) => JSON.stringify([providerKey(providerId), name]);
// Dify's older names of ReAct.
const REACT_NAMES = ["react", "cot", "react_router"];

function Agent({ app, config, saved, setSaved }) {
  const providers = useResource("/workspaces/current/tool-providers");
  const found = config.agent_mode || {};
  const listed = found.tools || [];
  const entries = listed.filter((t) => t && t.provider_id && t.tool_name);
  // What is not a tool (Dify's oldest configs listed an agent's datasets here) goes back as it is.
  const others = listed.filter((t) => !(t && t.provider_id && t.tool_name));
  // A tool is on only with `enabled: true` (Dify's rule, and the server's).
  const [chosen, setChosen] = useState(entries.filter((t) => t.enabled === true).map((t) => toolKey(t.provider_id, t.tool_name)));
  const [values, setValues] = useState(Object.fromEntries(entries.map((t) => [toolKey(t.provider_id, t.tool_name), { ...(t.tool_parameters || {}) }])));
  const [strategy, setStrategy] = useState(REACT_NAMES.includes(found.strategy) ? "react" : "function_call");
  const [rounds, setRounds] = useState(String(found.max_iteration ?? 5));
  const toggle = (key, on) => setChosen(on ? [...chosen, key] : chosen.filter((c) => c !== key));
  const setValue = (key, name, value) => setValues({ ...values, [key]: { ...(values[key] || {}), [name]: value } });
  const [save, busy, error] = useAction(async () => {
    setSaved(false);
    const number = Number(rounds);
    // Every tool listed before stays listed (switched off when unticked, its settings kept).
    // Each tool's kind: built-in, or one of the workspace's custom API tools (named too).
    const kinds = {};
    for (const t of entries) kinds[toolKey(t.provider_id, t.tool_name)] = { provider_type: t.provider_type || "builtin", provider_name: t.provider_name };
    for (const p of providers.data || []) {
      for (const t of p.tools) kinds[toolKey(p.id, t.name)] = { provider_type: p.type, provider_name: p.name };
    }
    const keys = [...new Set([...entries.map((t) => toolKey(t.provider_id, t.tool_name)), ...chosen])];
    const tools = keys.map((key) => {
      const [providerId, name] = JSON.parse(key);
      const kind = kinds[key] || { provider_type: "builtin" };
      const entry = { provider_type: kind.provider_type, provider_id: providerId, tool_name: name, tool_parameters: values[key] || {}, enabled: chosen.includes(key) };
      if (kind.provider_type === "api") entry.provider_name = kind.provider_name;
      return entry;
    });
    const next = { ...found, enabled: true, strategy, tools: [...tools, ...others],
      max_iteration: rounds.trim() !== "" && Number.isInteger(number) ? number : rounds };
    await api.post(`/apps/${app.id}/model-config`, { ...config, agent_mode: next });
    setSaved(true);
    invalidate(`/apps/${app.id}/model-config`);
  });
  return html`<section class="panel" aria-labelledby="agent-title">
    <h2 id="agent-title">Agent</h2>
    <form onSubmit=${(e) => { e.preventDefault(); save(); }}>
      <${Loaded} resource=${providers} what="Loading the tools">${(p) => html`
        <fieldset>
          <legend>Tools the agent may use</legend>
          <p class="muted">Your own services' operations are added on the <a href=${href("/tools")}>Tools</a> page.</p>
          ${p.map((provider) => provider.tools.map((tool) => {
            const key = toolKey(provider.id, tool.name);
            const settings = tool.parameters.filter((param) => param.form === "form");
            return html`<div key=${key} class="tool-choice">
              <${Field} type="checkbox" label=${`${provider.icon.content} ${tool.label.en_US}`} hint=${tool.description.en_US}
                value=${chosen.includes(key)} onInput=${(on) => toggle(key, on)} />
              ${chosen.includes(key) && settings.length > 0 && html`<div class="row">
                ${settings.map((param) => html`<${Field} key=${param.name} label=${`${tool.label.en_US}: ${param.label.en_US}`}
                  value=${(values[key] || {})[param.name] ?? ""} onInput=${(v) => setValue(key, param.name, v)}
                  hint=${`${param.human_description.en_US}${param.default ? ` Empty: ${param.default}` : ""}`} />`)}
              </div>`}
            </div>`;
          }))}
        </fieldset>`}<//>
      <div class="row">
        <${Field} label="How the model asks for tools" as="select" value=${strategy} onInput=${setStrategy} options=${STRATEGIES}
          hint="The server's local model always uses ReAct" />
        <${Field} label="Rounds that may call tools (1–99)" inputmode="numeric" value=${rounds} onInput=${setRounds}
          hint="Then one more round answers, without tools" />
      </div>
      <${ErrorBox} error=${error} />
      ${saved && html`<${Notice}>Agent saved.<//>`}
      <${Button} kind="primary" type="submit" busy=${busy}>Save agent<//>
    </form>
  </section>`;
}

function Config({ app }) {
  const config = useResource(`/apps/${app.id}/model-config`);
  const providers = useResource("/workspaces/current/model-providers");
  const datasets = useResource("/datasets", { page: 1, limit: 100 });
  const rerankers = useResource("/workspaces/current/models/model-types/rerank");
  const [saved, setSaved] = useState(false);
  const [knowledgeSaved, setKnowledgeSaved] = useState(false);
  const [agentSaved, setAgentSaved] = useState(false);
  // The form is made from what is stored, and made again only when that changes (a save):
  // keyed by the stored content, decided in the render itself, so a revalidation that
  // brings the same config back never wipes what is being typed.
  // Each panel by its own part of the config: saving one never wipes the other's edits.
  const stored = config.data ? config.data.data : {};
  const { dataset_configs: knowledgePart, agent_mode: agentPart, ...modelPart } = stored || {};
  const shown = JSON.stringify(modelPart);
  const shownKnowledge = JSON.stringify(knowledgePart || null);
  const shownAgent = JSON.stringify(agentPart || null);
  if (!CONFIG_MODES.includes(app.mode)) {
    return html`<section class="panel"><h2>Model and prompt</h2>
      <p>A ${app.mode} app is driven by its workflow: edit it on the <a href=${href(`/apps/${app.id}/workflow`)}>Workflow</a> page.</p>
    </section>`;
  }
  return html`<${Loaded} resource=${config} what="Loading the model config">${(c) => html`
    <${Loaded} resource=${providers} what="Loading the model providers">${(p) => html`
      <${ModelConfig} key=${shown} app=${app} config=${c.data} providers=${p.data} saved=${saved} setSaved=${setSaved} />`}<//>
    <${Loaded} resource=${datasets} what="Loading the datasets">${(d) => html`
      <${Loaded} resource=${rerankers} what="Loading the rerank models">${(r) => html`
        <${Knowledge} key=${shownKnowledge} app=${app} config=${c.data} datasets=${d.data} rerankers=${r.data}
          saved=${knowledgeSaved} setSaved=${setKnowledgeSaved} />`}<//>`}<//>
    ${app.mode === "agent-chat" && html`<${Agent} key=${shownAgent} app=${app} config=${c.data} saved=${agentSaved} setSaved=${setAgentSaved} />`}`}<//>`;
}

export default function AppSettings({ params }) {
  return html`<${AppPage} appId=${params.appId} current="">${(app, reload) => html`
    <${PageHeader} title=${`${app.name}: settings`} />
    <${Details} key=${app.id} app=${app} reload=${reload} />
    <${Config} app=${app} />`}<//>`;
}
