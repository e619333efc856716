// The current workspace: its name (admins rename it, `POST /workspaces/info`) and its members
// with their roles (`/workspaces/current/members`: add an existing account by email, change a
// role, remove). The server refuses what a role may not do, in words.
import { html, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { api, invalidate, useResource } from "../api.js";
import { atLeast, useSession } from "../session.js";
import { Button, Dialog, ErrorBox, Field, Loaded, Notice, PageHeader, Table, formatTime, useAction } from "../ui.js";

const PATH = "/workspaces/current/members";
const ROLES = [
  { value: "admin", label: "Admin: everything but the owner's rights" },
  { value: "editor", label: "Editor: builds and edits apps" },
  { value: "normal", label: "Normal: uses apps" },
];

function WorkspaceName({ session }) {
  const [name, setName] = useState(session.workspace ? session.workspace.name : "");
  const [saved, setSaved] = useState(false);
  const [save, busy, error] = useAction(async () => {
    setSaved(false);
    await api.post("/workspaces/info", { name });
    session.reload();
    setSaved(true);
  });
  return html`<section class="panel" aria-labelledby="workspace-title">
    <h2 id="workspace-title">Workspace</h2>
    <form class="row" onSubmit=${(e) => { e.preventDefault(); save(); }}>
      <${Field} label="Workspace name" required value=${name} onInput=${setName} />
      <div class="field"><${Button} kind="primary" type="submit" busy=${busy}>Rename<//></div>
    </form>
    <${ErrorBox} error=${error} />
    ${saved && html`<${Notice}>The workspace is now “${name.trim()}”.<//>`}
  </section>`;
}

function AddMember({ onAdded }) {
  const [email, setEmail] = useState("");
  const [role, setRole] = useState("normal");
  const [add, busy, error] = useAction(async () => {
    const reply = await api.post(PATH, { email, role });
    invalidate(PATH);
    setEmail("");
    onAdded(`Added ${reply.data.email} as ${reply.data.role}.`);
  });
  return html`<section class="panel" aria-labelledby="add-title">
    <h2 id="add-title">Add a member</h2>
    <form class="row" onSubmit=${(e) => { e.preventDefault(); add(); }}>
      <${Field} label="Email of an existing account" type="email" required value=${email} onInput=${setEmail} />
      <${Field} label="Role" as="select" value=${role} onInput=${setRole} options=${ROLES} />
      <div class="field"><${Button} kind="primary" type="submit" busy=${busy}>Add<//></div>
    </form>
    <${ErrorBox} error=${error} />
  </section>`;
}

export default function Members() {
  const session = useSession();
  const isAdmin = atLeast(session, "admin");
  const me = session.profile ? session.profile.id : null;
  const members = useResource(PATH);
  const [notice, setNotice] = useState("");
  const [removing, setRemoving] = useState(null);
  const [changeRole, , roleError] = useAction(async (member, role) => {
    await api.put(`${PATH}/${member.id}/update-role`, { role });
    invalidate(PATH);
    setNotice(`${member.email} is now ${role}.`);
  });
  const [remove, busy, removeError] = useAction(async () => {
    await api.delete(`${PATH}/${removing.id}`);
    invalidate(PATH);
    setNotice(`Removed ${removing.email} from the workspace.`);
    setRemoving(null);
  });
  const editable = (m) => isAdmin && m.role !== "owner" && m.id !== me;
  const columns = [
    { label: "Name", render: (m) => html`${m.name}${m.id === me && html` <span class="muted">(you)</span>`}` },
    { label: "Email", render: (m) => m.email },
    {
      label: "Role",
      render: (m) => (editable(m)
        ? html`<${Field} label=${`Role of ${m.email}`} as="select" value=${m.role}
            onInput=${(role) => changeRole(m, role)} options=${ROLES.map((r) => ({ value: r.value, label: r.value }))} />`
        : m.role),
    },
    { label: "Last sign-in", render: (m) => (m.last_login_at ? formatTime(m.last_login_at) : html`<span class="muted">never</span>`) },
  ];
  if (isAdmin) {
    columns.push({
      label: "Actions",
      render: (m) => editable(m) && html`<${Button} kind="danger" onClick=${() => setRemoving(m)} aria-label=${`Remove ${m.email}`}>Remove<//>`,
    });
  }
  return html`<${PageHeader} title="Members" />
    ${isAdmin && html`<${WorkspaceName} key=${session.workspace ? session.workspace.id : ""} session=${session} />`}
    ${isAdmin && html`<${AddMember} onAdded=${setNotice} />`}
    <${Notice}>${notice}<//>
    <${ErrorBox} error=${roleError} />
    <${Loaded} resource=${members} what="Loading the members">${(reply) => html`
      <${Table} caption=${`Members of ${session.workspace ? session.workspace.name : "this workspace"}`} columns=${columns} rows=${reply.data} />`}<//>
    <${Dialog} title="Remove this member?" open=${Boolean(removing)} onClose=${() => setRemoving(null)}>
      <p>${removing && removing.email} loses access to this workspace's apps and data (their account stays).</p>
      <${ErrorBox} error=${removeError} />
      <div class="row">
        <${Button} kind="danger" busy=${busy} onClick=${remove}>Remove<//>
        <${Button} onClick=${() => setRemoving(null)}>Cancel<//>
      </div>
    <//>`;
}
