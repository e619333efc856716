// The app's input form (`user_input_form`: Dify's one-key items, text-input, paragraph,
// select, number, checkbox) and file attachments (`file_upload`), shared by the chat,
// completion and workflow pages.
import { html, useState } from "../../vendor/htm-preact-3.1.1.module.js";
import { Button, ErrorBox, Field, useAction } from "../ui.js";

const FIELD_TYPES = ["text-input", "paragraph", "select", "number", "checkbox"];

// [{type, variable, label, required, options, max_length, default}] from the parameters.
export function formItems(parameters) {
  const items = [];
  for (const entry of (parameters && parameters.user_input_form) || []) {
    const [type] = Object.keys(entry || {});
    if (!FIELD_TYPES.includes(type)) continue;
    const spec = entry[type] || {};
    if (!spec.variable || spec.hide) continue;
    items.push({ type, ...spec, label: spec.label || spec.variable });
  }
  return items;
}

export function initialInputs(items) {
  const values = {};
  for (const item of items) {
    if (item.default !== undefined && item.default !== null) values[item.variable] = item.default;
    else values[item.variable] = item.type === "checkbox" ? false : "";
  }
  return values;
}

// What the server gets: numbers as numbers, empty optional fields left out.
export function inputsBody(items, values) {
  const body = {};
  for (const item of items) {
    const value = values[item.variable];
    if (value === "" || value === undefined || value === null) continue;
    body[item.variable] = item.type === "number" ? Number(value) : value;
  }
  return body;
}

export function InputForm({ items, values, onInput, disabled }) {
  if (!items.length) return null;
  const set = (name) => (value) => onInput({ ...values, [name]: value });
  return html`<div class="input-form">
    ${items.map((item) => {
      const label = item.required ? `${item.label} (required)` : item.label;
      const common = { key: item.variable, label, value: values[item.variable], onInput: set(item.variable), disabled, name: item.variable };
      if (item.type === "paragraph") return html`<${Field} as="textarea" ...${common} maxlength=${item.max_length || undefined} />`;
      if (item.type === "select") {
        const options = [{ value: "", label: "Choose…" }, ...(item.options || []).map((o) => ({ value: o, label: o }))];
        return html`<${Field} as="select" ...${common} options=${options} />`;
      }
      if (item.type === "number") return html`<${Field} type="number" ...${common} />`;
      if (item.type === "checkbox") return html`<${Field} type="checkbox" ...${common} />`;
      return html`<${Field} ...${common} maxlength=${item.max_length || undefined} />`;
    })}
  </div>`;
}

// Which uploads the app takes: Dify's newer shape (`enabled`, `allowed_file_types`) or the
// older `image: {enabled}`; null when none.
export function uploadPolicy(parameters) {
  const upload = (parameters && parameters.file_upload) || {};
  const methods = upload.allowed_file_upload_methods || (upload.image && upload.image.transfer_methods) || ["local_file"];
  if (!methods.includes("local_file")) return null;
  if (upload.enabled) {
    const types = upload.allowed_file_types && upload.allowed_file_types.length ? upload.allowed_file_types : ["image"];
    return { types, limit: upload.number_limits || 3 };
  }
  if (upload.image && upload.image.enabled) return { types: ["image"], limit: upload.image.number_limits || 3 };
  return null;
}

const ACCEPT = {
  image: "image/*",
  document: ".txt,.md,.markdown,.pdf,.html,.htm,.xlsx,.xls,.docx,.csv,.eml,.msg,.pptx,.ppt,.xml,.epub,.json",
  audio: "audio/*",
  video: "video/*",
};

function fileType(file, types) {
  const major = (file.type || "").split("/")[0];
  if (major === "image" && types.includes("image")) return "image";
  if (major === "audio" && types.includes("audio")) return "audio";
  if (major === "video" && types.includes("video")) return "video";
  if (types.includes("document")) return "document";
  return types.includes("custom") ? "custom" : types[0];
}

// The files attached to the next message: uploaded at once, shown with a remove button.
// `files` are [{type, transfer_method, upload_file_id, name}].
export function Attachments({ client, policy, files, onChange, disabled }) {
  const [upload, busy, error] = useAction(async (picked) => {
    const added = [];
    for (const file of picked) {
      const stored = await client.upload(file);
      added.push({ type: fileType(file, policy.types), transfer_method: "local_file", upload_file_id: stored.id, name: stored.name || file.name });
    }
    onChange([...files, ...added]);
  });
  if (!policy) return null;
  const full = files.length >= policy.limit;
  const accept = policy.types.map((t) => ACCEPT[t]).filter(Boolean).join(",");
  return html`<div class="attachments">
    <label class=${`button secondary file-pick${full || disabled || busy ? " disabled" : ""}`}>
      ${busy ? "Uploading…" : `Attach ${policy.types.join(" or ")}`}
      <input type="file" class="visually-hidden" accept=${accept || undefined} multiple=${policy.limit > 1}
        disabled=${full || disabled || busy}
        onChange=${(e) => { const picked = [...e.currentTarget.files].slice(0, policy.limit - files.length); e.currentTarget.value = ""; if (picked.length) upload(picked); }} />
    </label>
    ${files.map((f) => html`<span class="attached" key=${f.upload_file_id}>${f.name}
      <${Button} class="button secondary small" aria-label=${`Remove ${f.name}`} onClick=${() => onChange(files.filter((x) => x !== f))}>×<//>
    </span>`)}
    <${ErrorBox} error=${error} />
  </div>`;
}

export const filesBody = (files) => files.map(({ type, transfer_method, upload_file_id }) => ({ type, transfer_method, upload_file_id }));
