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
    return { lastId, error: error || new Error(`The answer's stream broke off: ${e.message || e}`), broken: !error };
  }
}

const RETRIES = 3; // reconnections after a dropped stream before saying so

// Follows a run's stream to its end: when the connection drops (or the stream stops before
// `ended()`), it asks for the run's events after the last one shown (`{path}/{taskId}/events`
// with Last-Event-ID), up to RETRIES times, so that a network drop costs a pause, not the
// answer. `state` holds {taskId, lastId}, kept current by `onEvent`.
export async function followToEnd(client, path, response, onEvent, state, ended) {
  let current = response;
  let result = { lastId: state.lastId, error: null };
  for (let attempt = 0; ; attempt += 1) {
    if (current) {
      result = await follow(current, onEvent, state.lastId);
      if (result.aborted || ended() || (result.error && !result.broken)) return result;
    }
    if (!state.taskId || attempt >= RETRIES) {
      return { ...result, error: result.error || new Error("The answer's stream ended before the answer did.") };
    }
    await new Promise((resolve) => setTimeout(resolve, 300 * (attempt + 1)));
    try {
      const headers = state.lastId ? { "Last-Event-ID": String(state.lastId) } : {};
      current = await client.send("GET", `${path}/${state.taskId}/events`, { headers });
    } catch (error) {
      if (error.status && error.status < 500) return { lastId: state.lastId, error }; // gone
      current = null;
      result = { lastId: state.lastId, error };
    }
  }
}

// Picks up a run a reload cut off: its events after the last one shown (`state.lastId`, sent
// as Last-Event-ID) from `{path}/{taskId}/events`; `consume(response)` reads them, `failed(error)`
// says why it could not (the run is gone, or not this end user's).
export function resumeRun(client, path, state, consume, failed) {
  const headers = state.lastId ? { "Last-Event-ID": String(state.lastId) } : {};
  client.send("GET", `${path}/${state.taskId}/events`, { headers }).then(consume, failed);
}
