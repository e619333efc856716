// Hash routes (`#/apps/…`): a reload or a shared link opens the same page, and the server needs
// no route per page. Pages are ES modules loaded on first visit (`import()`), so the first
// render fetches only the shell and the page shown.
import { useEffect, useState } from "../vendor/htm-preact-3.1.1.module.js";

// The route table and its matching live in js/boot.js (inline in index.html), which sends each
// page's first reads before any module has arrived: one table for both.
const boot = globalThis.conduitBoot;
export const ROUTES = boot.routes;

export function parseHash(hash = location.hash) {
  return boot.parseHash(hash);
}

// {module, title, params, reads} of the first route `path` matches, or null.
export function match(path) {
  return boot.match(path);
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
