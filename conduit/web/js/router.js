// Hash routes (`#/apps/…`): a reload or a shared link opens the same page, and the server needs
// no route per page. Pages are ES modules loaded on first visit (`import()`), so the first
// render fetches only the shell and the page shown.
import { useEffect, useState } from "../vendor/htm-preact-3.1.1.module.js";

// [pattern, module path, title]; `:name` captures one path segment. First match wins.
export const ROUTES = [
  ["/signin", "./pages/signin.js", "Sign in"],
  ["/apps", "./pages/apps.js", "Apps"],
  ["/apps/:appId", "./pages/app_settings.js", "App"],
  ["/apps/:appId/keys", "./pages/app_keys.js", "API keys"],
  ["/apps/:appId/site", "./pages/app_site.js", "Site"],
  ["/apps/:appId/debug", "./pages/debugger.js", "Debug"],
  ["/apps/:appId/logs", "./pages/logs.js", "Logs"],
  ["/apps/:appId/workflow", "./pages/workflow.js", "Workflow"],
  ["/apps/:appId/tasks", "./pages/tasks.js", "Tasks"],
  ["/datasets", "./pages/datasets.js", "Knowledge"],
  ["/datasets/:datasetId", "./pages/dataset.js", "Dataset"],
  ["/providers", "./pages/providers.js", "Model providers"],
  ["/members", "./pages/members.js", "Members"],
];

export function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#/, "") || "/apps";
  const [path, search = ""] = raw.split("?");
  return { path: path || "/apps", query: Object.fromEntries(new URLSearchParams(search)) };
}

export function match(path) {
  const parts = path.split("/").filter(Boolean);
  for (const [pattern, module, title] of ROUTES) {
    const want = pattern.split("/").filter(Boolean);
    if (want.length !== parts.length) continue;
    const params = {};
    let ok = true;
    want.forEach((segment, i) => {
      if (segment.startsWith(":")) params[segment.slice(1)] = decodeURIComponent(parts[i]);
      else if (segment !== parts[i]) ok = false;
    });
    if (ok) return { module, title, params };
  }
  return null;
}

export function navigate(path, query) {
  const search = query ? `?${new URLSearchParams(query)}` : "";
  location.hash = `#${path}${search}`;
}

export function href(path) {
  return `#${path}`;
}

export function useLocation() {
  const [where, setWhere] = useState(parseHash());
  useEffect(() => {
    const onChange = () => setWhere(parseHash());
    addEventListener("hashchange", onChange);
    return () => removeEventListener("hashchange", onChange);
  }, []);
  return where;
}
