"""App model config → prompt: inputs validated against `user_input_form`, `{{var}}` templates,
conversation memory. Dify's messages are kept word for word (people grep for them)."""

from __future__ import annotations

import re
from typing import Any

from conduit.core.llm.provider import ChatMessage, GenerationParams
from conduit.errors import InvalidParam

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
TEXT_CONTROLS = ("text-input", "paragraph", "select")


def form_fields(model_config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(control type, field) pairs of the app's `user_input_form`."""
    fields = []
    for item in model_config.get("user_input_form") or []:
        if isinstance(item, dict) and len(item) == 1:
            control, spec = next(iter(item.items()))
            if isinstance(spec, dict) and spec.get("variable"):
                fields.append((str(control), spec))
    return fields


def validate_inputs(model_config: dict[str, Any], inputs: Any) -> dict[str, Any]:
    """Check `inputs` against the form; returns the cleaned values (defaults filled in)."""
    if inputs is None:
        inputs = {}
    if not isinstance(inputs, dict):
        raise InvalidParam("inputs must be an object")
    cleaned: dict[str, Any] = {}
    for control, spec in form_fields(model_config):
        name = str(spec["variable"])
        value = inputs.get(name)
        if value is None or value == "":
            if spec.get("required"):
                raise InvalidParam(f"{name} is required in input form")
            value = spec.get("default", "")
            cleaned[name] = value
            continue
        if control in TEXT_CONTROLS:
            if not isinstance(value, str):
                raise InvalidParam(
                    f"(type '{type(value).__name__}') {name} in input form must be a string"
                )
            max_length = spec.get("max_length")
            if isinstance(max_length, int) and max_length > 0 and len(value) > max_length:
                raise InvalidParam(
                    f"{name} in input form must be less than {max_length} characters"
                )
            options = spec.get("options")
            if control == "select" and isinstance(options, list) and value not in options:
                raise InvalidParam(f"{name} in input form must be one of the following: {options}")
        elif control == "number":
            try:
                value = float(value) if "." in str(value) else int(value)
            except (TypeError, ValueError):
                raise InvalidParam(f"{name} in input form must be a valid number") from None
        elif control == "checkbox":
            value = _checked(name, value)
        elif control == "json_object" and not isinstance(value, dict):
            raise InvalidParam(f"{name} in input form must be a dict")
        cleaned[name] = value
    # Variables not in the form are kept (templates may use them); Dify ignores them likewise.
    for key, value in inputs.items():
        cleaned.setdefault(str(key), value)
    return cleaned


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _checked(name: str, value: Any) -> bool:
    """A checkbox input: a boolean, or its text as Dify reads it."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidParam(f"{name} in input form must be a boolean")


def render(template: str, values: dict[str, Any]) -> str:
    return _VARIABLE.sub(lambda m: str(values.get(m.group(1), "")), template)


def generation_params(model_config: dict[str, Any], default_model: str) -> GenerationParams:
    found = model_config.get("model")
    model: dict[str, Any] = found if isinstance(found, dict) else {}
    found_params = model.get("completion_params")
    params: dict[str, Any] = found_params if isinstance(found_params, dict) else {}
    stop = params.get("stop") or ()
    return GenerationParams(
        model=str(model.get("name") or default_model),
        temperature=_number(params.get("temperature")),
        top_p=_number(params.get("top_p")),
        max_tokens=int(params["max_tokens"]) if isinstance(params.get("max_tokens"), int) else None,
        stop=tuple(str(s) for s in stop) if isinstance(stop, list | tuple) else (),
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def chat_prompt(
    model_config: dict[str, Any], inputs: dict[str, Any], history: list[tuple[str, str]], query: str
) -> list[ChatMessage]:
    """System prompt (the app's `pre_prompt`), past turns, then the question."""
    messages: list[ChatMessage] = []
    system = render(str(model_config.get("pre_prompt") or ""), inputs).strip()
    if system:
        messages.append(ChatMessage("system", system))
    for past_query, past_answer in history:
        messages.append(ChatMessage("user", past_query))
        messages.append(ChatMessage("assistant", past_answer))
    messages.append(ChatMessage("user", query))
    return messages


def completion_prompt(
    model_config: dict[str, Any], inputs: dict[str, Any], query: str
) -> list[ChatMessage]:
    """The rendered template, plus the legacy `query` when one is sent."""
    parts = [render(str(model_config.get("pre_prompt") or ""), inputs).strip(), query.strip()]
    text = "\n\n".join(part for part in parts if part)
    if not text:
        text = "\n".join(
            f"{key}: {value}" for key, value in inputs.items() if value not in (None, "")
        )
    if not text:
        raise InvalidParam("query is required")
    return [ChatMessage("user", text)]


def memory_turns(model_config: dict[str, Any], default: int) -> int:
    memory = model_config.get("memory")
    if isinstance(memory, dict):
        window = memory.get("window")
        if isinstance(window, dict):
            if window.get("enabled") is False:
                return 0
            if isinstance(window.get("size"), int):
                return max(0, int(window["size"]))
    return default
