// Reading a run's stream on the web app: the events through js/sse.js, a stream `error` event
// turned into an ApiError (the server's words), the run's names from the response headers.
import { readEvents } from "../sse.js";
import { ApiError } from "./api.js";

export function runNames(response) {
  const h = response.headers;
  return {
    taskId: h.get("x-task-id"),
    messageId: h.get("x-message-id"),
    conversationId: h.get("x-conversation-id"),
    workflowRunId: h.get("x-workflow-run-id"),
  };
}

// Calls onEvent(event, id) for each event; returns {lastId, error} (error: the stream's own
// `error` event as an ApiError, or a broken connection's).
export async function follow(response, onEvent, lastId = null) {
  let error = null;
  try {
    const last = await readEvents(response, (event, id) => {
      if (event && event.event === "error") {
        error = new ApiError(event.status, event.code, event.message || "The run failed.", response.headers.get("x-request-id"));
      }
      onEvent(event, id);
    }, lastId);
    return { lastId: last, error };
  } catch (e) {
    if (e && e.name === "AbortError") return { lastId, error, aborted: true };
    return { lastId, error: error || new Error(`The answer's stream broke off: ${e.message || e}`) };
  }
}

// Picks up a run a reload cut off: its events after the last one shown (`state.lastId`, sent
// as Last-Event-ID) from `{path}/{taskId}/events`; `consume(response)` reads them, `failed(error)`
// says why it could not (the run is gone, or not this end user's).
export function resumeRun(client, path, state, consume, failed) {
  const headers = state.lastId ? { "Last-Event-ID": String(state.lastId) } : {};
  client.send("GET", `${path}/${state.taskId}/events`, { headers }).then(consume, failed);
}
