"""An app's model config: reading it, and validating and storing it whole (400 naming the
bad field). The model it names must be a server provider or one of the workspace's providers
(`services/model_providers.py`)."""

from __future__ import annotations

import contextlib
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conduit.core.apps.agent import MAX_ITERATION, STRATEGY_NAMES
from conduit.core.apps.knowledge import RERANKING_MODEL, WEIGHTED_SCORE, reranking
from conduit.core.tools import builtin
from conduit.core.tools.base import ToolError
from conduit.db.models import (
    App,
    AppMode,
    Dataset,
    IndexingTechnique,
    Membership,
    ProviderCredential,
    Role,
)
from conduit.errors import InvalidParam, NotFound
from conduit.services import api_tools
from conduit.services._fields import boolean as _bool
from conduit.services._fields import text as _text
from conduit.services.apps import AppFields, get_app, require_role, update_app
from conduit.services.conversations import is_uuid
from conduit.services.datasets import rerank
from conduit.services.datasets.models import LOCAL_MODEL_ID, LOCAL_PROVIDER
from conduit.services.datasets.retrieval import reranker_model
from conduit.services.model_providers import (
    DEFAULT_PROVIDERS,
    SERVER_PROVIDERS,
    WORKSPACE_PREFIX,
    readable_providers,
)

CONFIG_MODES = (AppMode.CHAT, AppMode.COMPLETION, AppMode.AGENT_CHAT)
FORM_CONTROLS = (
    "text-input",
    "paragraph",
    "select",
    "number",
    "checkbox",
    "file",
    "file-list",
    "external_data_tool",
)
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_PROMPT = 100_000


def get_model_config(session: Session, *, member: Membership, app_id: str) -> dict[str, Any]:
    return dict(get_app(session, member.tenant_id, app_id).model_config_ or {})


def save_model_config(session: Session, *, member: Membership, app_id: str, config: Any) -> App:
    """Validate and store an app's model config (the whole config: it replaces the old one).
    Through `update_app`, so `app-model-config-was-updated` fires and caches are invalidated."""
    require_role(member, Role.EDITOR, "edit apps")
    app = get_app(session, member.tenant_id, app_id)
    if app.mode not in CONFIG_MODES:
        raise InvalidParam(
            f"{app.mode.value} apps have no model config (chat, agent-chat and completion do)"
        )
    cleaned = validate_model_config(session, member.tenant_id, config)
    return update_app(session, member=member, app_id=app_id, fields=AppFields(model_config=cleaned))


def validate_model_config(session: Session, tenant_id: str, config: Any) -> dict[str, Any]:
    """The config with its known fields checked (400 naming the field); other keys (Dify's
    features this server does not use yet) are kept as they are."""
    if not isinstance(config, dict):
        raise InvalidParam("model_config: must be an object")
    cleaned = dict(config)
    for key, limit in (("pre_prompt", MAX_PROMPT), ("opening_statement", 10_000)):
        if key in cleaned and cleaned[key] is not None:
            cleaned[key] = _text(cleaned[key], key, limit)
    if cleaned.get("suggested_questions") is not None:
        cleaned["suggested_questions"] = _questions(cleaned["suggested_questions"])
    if cleaned.get("suggested_questions_after_answer") is not None:
        cleaned["suggested_questions_after_answer"] = _switch(
            cleaned["suggested_questions_after_answer"], "suggested_questions_after_answer"
        )
    if cleaned.get("user_input_form") is not None:
        cleaned["user_input_form"] = _form(cleaned["user_input_form"])
    if cleaned.get("model") is not None:
        cleaned["model"] = _model(session, tenant_id, cleaned["model"])
    if cleaned.get("memory") is not None:
        cleaned["memory"] = _memory(cleaned["memory"])
    if cleaned.get("dataset_configs") is not None:
        cleaned["dataset_configs"] = _dataset_configs(
            session, tenant_id, cleaned["dataset_configs"]
        )
    if cleaned.get("agent_mode") is not None:
        cleaned["agent_mode"] = agent_mode(
            cleaned["agent_mode"], session=session, tenant_id=tenant_id
        )
    return cleaned


MAX_TOOLS = 50
MAX_SETTING = 1000  # characters of a tool's setting


def agent_mode(
    value: Any, *, session: Session | None = None, tenant_id: str | None = None
) -> dict[str, Any]:
    """Dify's `agent_mode`: `enabled`, `strategy` (function_call or react), `max_iteration`
    (1 to 99) and `tools`, each a built-in tool (`provider_type` builtin, `provider_id`,
    `tool_name`) with its `tool_parameters` (the values the app sets: a time zone...)
    checked, or one of the workspace's custom API tools (`provider_type` api, the provider's
    id — or its `provider_name` — and an operation of it); an unknown tool is a 400 naming
    it, and so is a name two of the agent's tools share (the model calls them by name)."""
    found = _object(value, "agent_mode")
    if "enabled" in found:
        found["enabled"] = _bool(found["enabled"], "agent_mode.enabled")
    strategy = found.get("strategy")
    if strategy is not None and strategy not in STRATEGY_NAMES:
        raise InvalidParam(
            "agent_mode.strategy: must be one of the following: [function_call, react] "
            "(or Dify's older names: cot, router, react_router)"
        )
    if found.get("max_iteration") is not None:
        found["max_iteration"] = _int(
            found["max_iteration"], "agent_mode.max_iteration", 1, MAX_ITERATION
        )
    tools = found.get("tools")
    if tools is None:
        return found
    if not isinstance(tools, list) or len(tools) > MAX_TOOLS:
        raise InvalidParam(f"agent_mode.tools: must be a list of at most {MAX_TOOLS} tools")
    checked = []
    names: set[str] = set()
    for index, item in enumerate(tools):
        field = f"agent_mode.tools[{index}]"
        if isinstance(item, dict) and item.get("provider_type") == api_tools.API:
            tool = _api_tool(item, field, session, tenant_id)
        else:
            tool = _agent_tool(item, field)
        name = tool.get("tool_name")
        if isinstance(name, str):
            if name in names:
                raise InvalidParam(
                    f"{field}.tool_name: another of the agent's tools is called {name!r}"
                )
            names.add(name)
        checked.append(tool)
    found["tools"] = checked
    return found


def _api_tool(
    item: dict[str, Any], field: str, session: Session | None, tenant_id: str | None
) -> dict[str, Any]:
    """A custom API tool of this workspace: its provider (by id, else by name) and an
    operation of it."""
    provider = None
    if session is not None and tenant_id is not None:
        provider = api_tools.provider_by_id(session, tenant_id, str(item.get("provider_id") or ""))
        if provider is None and isinstance(item.get("provider_name"), str):
            with contextlib.suppress(NotFound):
                provider = api_tools.get_provider(session, tenant_id, item["provider_name"])
    if provider is None:
        raise InvalidParam(
            f"{field}.provider_id: no custom tool provider "
            f"{item.get('provider_name') or item.get('provider_id')!r} in this workspace"
        )
    operations = [op["operation_id"] for op in provider.operations or []]
    if item.get("tool_name") not in operations:
        raise InvalidParam(
            f"{field}.tool_name: {provider.name} has no operation {item.get('tool_name')!r}; "
            f"its operations: {', '.join(operations)}"
        )
    if "enabled" in item:
        item["enabled"] = _bool(item["enabled"], f"{field}.enabled")
    item["provider_id"] = provider.id
    item["provider_name"] = provider.name
    item["tool_parameters"] = {}
    item.setdefault("tool_label", item["tool_name"])
    return item


def _agent_tool(value: Any, field: str) -> dict[str, Any]:
    item = _object(value, field)
    if set(item) == {"dataset"}:
        return item  # (Dify's oldest configs listed an agent's datasets here: no tool)
    try:
        provider, tool = builtin.served(
            item.get("provider_type"), item.get("provider_id"), item.get("tool_name"), field
        )
    except ToolError as error:
        raise InvalidParam(str(error)) from None
    if "enabled" in item:
        item["enabled"] = _bool(item["enabled"], f"{field}.enabled")
    values = item.get("tool_parameters")
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise InvalidParam(f"{field}.tool_parameters: must be an object")
    settable = {p.name for p in tool.parameters if p.form == "form"}
    values = {name: value for name, value in values.items() if name in settable}
    for name, value in values.items():
        if isinstance(value, str) and len(value) > MAX_SETTING:
            raise InvalidParam(
                f"{field}.tool_parameters.{name}: must be at most {MAX_SETTING} characters"
            )
    try:
        tool.settings(values)
    except ToolError as error:
        raise InvalidParam(f"{field}.tool_parameters: {error}") from None
    item["provider_type"] = "builtin"
    item["provider_id"] = provider.id
    item["tool_parameters"] = values
    item.setdefault("tool_label", tool.label)
    return item


def _dataset_configs(session: Session, tenant_id: str, value: Any) -> dict[str, Any]:
    """Dify's `dataset_configs`: the datasets the app retrieves from (each of this
    workspace) and how (`retrieval_model` single or multiple, `top_k`, a score threshold)."""
    found = _object(value, "dataset_configs")
    mode = found.get("retrieval_model", "multiple")
    if mode not in ("single", "multiple"):
        raise InvalidParam("dataset_configs.retrieval_model: must be single or multiple")
    found["retrieval_model"] = mode
    holder = _object(found.get("datasets") or {"datasets": []}, "dataset_configs.datasets")
    entries = holder.get("datasets") or []
    if not isinstance(entries, list):
        raise InvalidParam("dataset_configs.datasets.datasets: must be a list")
    ids: list[str] = []
    for index, entry in enumerate(entries):
        where = f"dataset_configs.datasets.datasets[{index}]"
        dataset = _object(_object(entry, where).get("dataset"), f"{where}.dataset")
        dataset["enabled"] = _bool(dataset.get("enabled", True), f"{where}.dataset.enabled")
        if not isinstance(dataset.get("id"), str) or not is_uuid(dataset["id"]):
            raise InvalidParam(f"{where}.dataset.id: must be a dataset id")
        ids.append(dataset["id"])
    known = set(
        session.scalars(
            select(Dataset.id).where(Dataset.tenant_id == tenant_id, Dataset.id.in_(ids))
        )
    )
    for index, dataset_id in enumerate(ids):
        if dataset_id not in known:
            raise InvalidParam(
                f"dataset_configs.datasets.datasets[{index}].dataset.id: no dataset "
                f"{dataset_id} in this workspace"
            )
    if "top_k" in found and found["top_k"] is not None:
        found["top_k"] = _int(found["top_k"], "dataset_configs.top_k", 1, 10)
    if "score_threshold_enabled" in found:
        found["score_threshold_enabled"] = _bool(
            found["score_threshold_enabled"], "dataset_configs.score_threshold_enabled"
        )
    if found.get("score_threshold") is not None:
        found["score_threshold"] = _number(
            found["score_threshold"], "dataset_configs.score_threshold", 0, 1
        )
    _reranking(session, tenant_id, found, ids)
    return found


def _reranking(session: Session, tenant_id: str, found: dict[str, Any], ids: list[str]) -> None:
    """Dify's multiple retrieval's reranking, checked: the rerank model one names must be the
    workspace's; a weighted score compares meaning across the datasets, so their embedded
    ones must share one embedding model (else a rerank model is the way, as Dify says)."""
    for flag in ("reranking_enable", "reranking_enabled"):
        if found.get(flag) is not None:
            found[flag] = _bool(found[flag], f"dataset_configs.{flag}")
    mode = found.get("reranking_mode")
    if mode is not None and mode not in (RERANKING_MODEL, WEIGHTED_SCORE):
        raise InvalidParam(
            f"dataset_configs.reranking_mode: must be {RERANKING_MODEL} or {WEIGHTED_SCORE}"
        )
    if not rerank.well_named(found.get("reranking_model")):
        raise InvalidParam(
            "dataset_configs.reranking_model: must be {reranking_provider_name, "
            "reranking_model_name} (strings)"
        )
    weights = found.get("weights")
    if weights is not None:
        weights = _object(weights, "dataset_configs.weights")
        parts = (("vector_setting", "vector_weight"), ("keyword_setting", "keyword_weight"))
        for part, key in parts:
            setting = _object(weights.get(part) or {}, f"dataset_configs.weights.{part}")
            if key in setting:
                _number(setting[key], f"dataset_configs.weights.{part}.{key}", 0, 1)
    chosen = reranking(found)
    if chosen is None:
        return
    if chosen.mode == RERANKING_MODEL:
        rerank.resolve(
            session, tenant_id, reranker_model(chosen), secret=None,
            field="dataset_configs.reranking_model",
        )  # fmt: skip
        return
    # (A dataset without documents has no model yet: its first upload gives it the local one.)
    models = {
        (
            dataset.embedding_model_provider or LOCAL_PROVIDER,
            dataset.embedding_model or LOCAL_MODEL_ID,
        ): dataset.name
        for dataset in session.scalars(
            select(Dataset).where(
                Dataset.tenant_id == tenant_id,
                Dataset.id.in_(ids),
                Dataset.indexing_technique == IndexingTechnique.HIGH_QUALITY,
            )
        )
    }
    if len(models) > 1:
        raise InvalidParam(
            "dataset_configs.reranking_mode: weighted_score compares meaning across the "
            f"datasets, and {' and '.join(sorted(models.values()))} use different embedding "
            "models: choose a rerank model (reranking_model) instead"
        )


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidParam(f"{field}: must be an object")
    return dict(value)


def _int(value: Any, field: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidParam(f"{field}: must be an integer between {low} and {high}")
    return value


def _number(value: Any, field: str, low: float, high: float) -> float | int:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not low <= value <= high
        or value != value
    ):
        raise InvalidParam(f"{field}: must be a number between {low:g} and {high:g}")
    return value


def _questions(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > 20:
        raise InvalidParam("suggested_questions: must be a list of at most 20 strings")
    for index, item in enumerate(value):
        _text(item, f"suggested_questions[{index}]", 1000)
    return list(value)


def _switch(value: Any, field: str) -> dict[str, Any]:
    found = _object(value, field)
    found["enabled"] = _bool(found.get("enabled", False), f"{field}.enabled")
    return found


def _form(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise InvalidParam("user_input_form: must be a list")
    seen: set[str] = set()
    items: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        where = f"user_input_form[{index}]"
        if not isinstance(item, dict) or len(item) != 1:
            raise InvalidParam(
                f"{where}: must be an object with one control, e.g. {{'text-input': {{...}}}}"
            )
        control, spec = next(iter(item.items()))
        if control not in FORM_CONTROLS:
            raise InvalidParam(f"{where}: unknown control {control!r} ({', '.join(FORM_CONTROLS)})")
        where = f"{where}.{control}"
        spec = _object(spec, where)
        variable = spec.get("variable")
        if not isinstance(variable, str) or not _VARIABLE.match(variable):
            raise InvalidParam(
                f"{where}.variable: must start with a letter or _ and hold only letters, digits "
                "and _ (at most 64)"
            )
        if variable in seen:
            raise InvalidParam(f"{where}.variable: {variable!r} is used twice")
        seen.add(variable)
        if spec.get("label") is not None:
            _text(spec["label"], f"{where}.label", 255)
        if spec.get("required") is not None:
            _bool(spec["required"], f"{where}.required")
        if spec.get("max_length") is not None:
            _int(spec["max_length"], f"{where}.max_length", 1, 1_000_000)
        if control == "select":
            options = spec.get("options")
            if not isinstance(options, list) or not options:
                raise InvalidParam(f"{where}.options: must be a non-empty list of strings")
            for position, option in enumerate(options):
                _text(option, f"{where}.options[{position}]", 1000)
        items.append({control: spec})
    return items


def _model(session: Session, tenant_id: str, value: Any) -> dict[str, Any]:
    model = _object(value, "model")
    provider = model.get("provider")
    row: ProviderCredential | None = None
    if isinstance(provider, str) and provider.startswith(WORKSPACE_PREFIX):
        found = session.scalars(
            readable_providers(tenant_id).where(
                ProviderCredential.id == provider.removeprefix(WORKSPACE_PREFIX)
            )
        ).first()
        if found is None:
            raise InvalidParam(
                f"model.provider: {provider!r} is no model provider of this workspace"
            )
        row = found
    elif provider not in DEFAULT_PROVIDERS and provider not in SERVER_PROVIDERS:
        raise InvalidParam(
            f"model.provider: unknown provider {provider!r} (default, local, "
            "openai_api_compatible, or workspace:<id> of a model provider of this workspace)"
        )
    name = model.get("name")
    if name is None and row is not None:
        raise InvalidParam("model.name: required with a workspace provider")
    if name is not None:
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise InvalidParam("model.name: must be a model name (1 to 255 characters)")
        if row is not None and row.models and name not in row.models:
            raise InvalidParam(
                f"model.name: {name!r} is not a model of {row.name!r} ({', '.join(row.models)})"
            )
    if model.get("mode") is not None and model["mode"] not in ("chat", "completion"):
        raise InvalidParam("model.mode: must be chat or completion")
    if model.get("completion_params") is not None:
        model["completion_params"] = _params(model["completion_params"])
    return model


def _params(value: Any) -> dict[str, Any]:
    where = "model.completion_params"
    params = _object(value, where)
    for key, low, high in (
        ("temperature", 0.0, 2.0),
        ("top_p", 0.0, 1.0),
        ("presence_penalty", -2.0, 2.0),
        ("frequency_penalty", -2.0, 2.0),
    ):
        if params.get(key) is not None:
            _number(params[key], f"{where}.{key}", low, high)
    if params.get("max_tokens") is not None:
        _int(params["max_tokens"], f"{where}.max_tokens", 1, 1_000_000)
    stop = params.get("stop")
    if stop is not None:
        if not isinstance(stop, list) or len(stop) > 4:
            raise InvalidParam(f"{where}.stop: must be a list of at most 4 strings")
        for index, item in enumerate(stop):
            if not isinstance(item, str) or not item:
                raise InvalidParam(f"{where}.stop[{index}]: must be a non-empty string")
    return params


def _memory(value: Any) -> dict[str, Any]:
    memory = _object(value, "memory")
    if memory.get("window") is not None:
        window = _object(memory["window"], "memory.window")
        if window.get("enabled") is not None:
            _bool(window["enabled"], "memory.window.enabled")
        if window.get("size") is not None:
            _int(window["size"], "memory.window.size", 1, 100)
        memory["window"] = window
    return memory
