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
