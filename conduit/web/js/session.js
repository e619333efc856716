// The signed-in account, its workspaces and the current one, for every page (`useSession`).
import { createContext, useContext } from "../vendor/htm-preact-3.1.1.module.js";

// {profile, workspaces, workspace, reload, signOut} while signed in.
export const SessionContext = createContext(null);

export function useSession() {
  return useContext(SessionContext);
}

// Whether the current workspace role is at least `role` (owner > admin > editor > normal).
const RANKS = { normal: 0, dataset_operator: 0, editor: 1, admin: 2, owner: 3 };
export function atLeast(session, role) {
  const mine = session && session.workspace ? session.workspace.role : "normal";
  return (RANKS[mine] ?? 0) >= (RANKS[role] ?? 0);
}
