// Sign in with email and password (`POST /console/api/login`); the tokens go to localStorage.
import { html, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { api, tokens } from "../api.js";
import { Button, ErrorBox, Field, useAction } from "../ui.js";

export default function SignIn({ onSignedIn }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [signIn, busy, error] = useAction(async () => {
    const reply = await api.post("/login", { email, password });
    tokens.set(reply.data);
    onSignedIn();
  });
  document.title = "Sign in · Conduit";
  return html`<div class="signin panel">
    <h1>Sign in to Conduit</h1>
    <form onSubmit=${(e) => { e.preventDefault(); signIn(); }}>
      <${Field} label="Email" type="email" autocomplete="username" required value=${email} onInput=${setEmail} />
      <${Field} label="Password" type="password" autocomplete="current-password" required value=${password} onInput=${setPassword} />
      <${ErrorBox} error=${error} />
      <${Button} kind="primary" type="submit" busy=${busy}>Sign in<//>
    </form>
    <p class="muted">First time? <code>conduit quickstart</code> prints the admin's email and password.</p>
  </div>`;
}
