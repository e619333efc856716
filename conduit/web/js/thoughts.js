// An agent's rounds (Dify's `agent_thought` events; a message's `agent_thoughts`): the tools
// it used, each with its input and what the tool answered, above the answer. The same round
// comes again (same id) as its call and then its result fill in: `withThought` replaces it.
import { html } from "../vendor/htm-preact-3.1.1.module.js";

// `thoughts` with `event` (an `agent_thought`) in its round's place.
export function withThought(thoughts, event) {
  const round = {
    id: event.id, position: event.position, tool: event.tool || "",
    tool_input: event.tool_input || "", observation: event.observation || "",
  };
  const list = thoughts || [];
  return list.some((t) => t.id === round.id) ? list.map((t) => (t.id === round.id ? round : t)) : [...list, round];
}

// `thoughts` with a workflow agent node's `agent_log` (Dify's): a round (no parent) is one
// thought; each tool call under it (`CALL <tool>`) adds its tool and input when it starts
// (the round shows it being used), and its answer when it ends.
export function withAgentLog(thoughts, log) {
  const list = thoughts || [];
  const data = log.data || {};
  if (!log.parent_id) {
    if (list.some((t) => t.id === log.id)) return list;
    const position = Number(String(log.label || "").replace(/\D+/g, "")) || list.length + 1;
    return withThought(list, { id: log.id, position });
  }
  const round = list.find((t) => t.id === log.parent_id);
  const name = data.tool_name;
  if (!round || !name) return list;
  const read = (text) => (text ? JSON.parse(text) : {});
  if (log.status === "start") {
    const tools = round.tool ? round.tool.split(";") : [];
    return withThought(list, {
      ...round, tool: [...tools, name].join(";"),
      tool_input: JSON.stringify({ ...read(round.tool_input), [name]: data.tool_input }),
    });
  }
  return withThought(list, { ...round, observation: JSON.stringify({ ...read(round.observation), [name]: data.tool_response }) });
}

// A JSON text laid out for reading (as it came when it is not JSON).
function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

export function Thoughts({ thoughts }) {
  const used = (thoughts || []).filter((t) => t.tool);
  if (!used.length) return null;
  return html`<div class="tool-calls" data-testid="tool-calls">
    ${used.map((t) => html`<details key=${t.id} class="tool-call" data-testid="tool-call" data-done=${t.observation ? "true" : "false"}>
      <summary>${t.observation ? "Used" : "Using"} <strong>${t.tool.split(";").join(", ")}</strong></summary>
      <div class="tool-io"><span class="muted">Input</span><pre>${pretty(t.tool_input)}</pre></div>
      ${t.observation && html`<div class="tool-io"><span class="muted">Output</span><pre data-testid="tool-output">${pretty(t.observation)}</pre></div>`}
    </details>`)}
  </div>`;
}
