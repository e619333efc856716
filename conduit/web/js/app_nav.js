// The tabs of one app's pages; which ones show depends on the app's mode.
import { html, Loaded } from "./ui.js";
import { useResource } from "./api.js";
import { href } from "./router.js";

const TABS = [
  ["", "Settings", () => true],
  ["/debug", "Debug", (mode) => mode === "chat" || mode === "completion" || mode === "agent-chat"],
  ["/workflow", "Workflow", (mode) => mode === "workflow" || mode === "advanced-chat"],
  ["/logs", "Logs", () => true],
  ["/annotations", "Annotations", (mode) => mode === "chat" || mode === "agent-chat" || mode === "advanced-chat"],
  ["/keys", "API keys", () => true],
  ["/site", "Site", () => true],
  ["/tasks", "Tasks", () => true],
];

// `current` is the tab's path suffix ("" for settings, "/debug", …). `children(app)` renders
// the page under the tabs once the app is loaded.
export function AppPage({ appId, current, children }) {
  const app = useResource(`/apps/${appId}`);
  return html`<${Loaded} resource=${app} what="Loading the app">${({ data }) => html`
    <nav class="tabs" aria-label="App pages">
      <a class="back" href=${href("/apps")}>← Apps</a>
      <span class="app-name">${data.name} <small class="mode">${data.mode}</small></span>
      ${TABS.filter(([, , shown]) => shown(data.mode)).map(([suffix, label]) => html`
        <a href=${href(`/apps/${appId}${suffix}`)} aria-current=${suffix === current ? "page" : undefined}>${label}</a>`)}
    </nav>
    ${children(data, app.reload)}`}<//>`;
}
