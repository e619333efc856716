// Server-sent events over fetch (a run starts with a POST, which EventSource cannot send):
// frames are split on blank lines, `id:` is remembered (the run's event-log position, what
// `Last-Event-ID` resumes from), `data:` is JSON. `ping` comments are skipped.

// Reads `response`'s body to its end, calling onEvent(event, id) for each data frame; returns
// the last id seen (or `lastId` when none came).
export async function readEvents(response, onEvent, lastId = null) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let last = lastId;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = frameEnd(buffer)) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^(\r?\n){2}/, "");
      const parsed = parseFrame(frame);
      if (parsed === null) continue;
      if (parsed.id !== null) last = parsed.id;
      if (parsed.data !== null) onEvent(parsed.data, parsed.id);
    }
  }
  return last;
}

function frameEnd(buffer) {
  const a = buffer.indexOf("\n\n");
  const b = buffer.indexOf("\r\n\r\n");
  if (a < 0) return b;
  if (b < 0) return a;
  return Math.min(a, b);
}

function parseFrame(frame) {
  let id = null;
  const data = [];
  for (const line of frame.split(/\r?\n/)) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") id = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length && id === null) return null;
  let payload = null;
  if (data.length) {
    try { payload = JSON.parse(data.join("\n")); } catch { payload = { event: "raw", data: data.join("\n") }; }
  }
  return { id, data: payload };
}

// Where a run's stream is kept so that a reload can pick it up: {taskId, lastId, ...extra}.
export const pending = {
  key: (scope) => `conduit.stream.${scope}`,
  save(scope, value) { sessionStorage.setItem(this.key(scope), JSON.stringify(value)); },
  load(scope) {
    try { return JSON.parse(sessionStorage.getItem(this.key(scope)) || "null"); } catch { return null; }
  },
  clear(scope) { sessionStorage.removeItem(this.key(scope)); },
};
