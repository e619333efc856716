"""Model provider names from Dify, mapped onto this server's when a graph or a model config is
written (a DSL import, a draft sync).

Dify names a model's provider after its plugin (`langgenius/openai/openai`,
`langgenius/openai_api_compatible/openai_api_compatible`) or, in older files, by the bare
name (`openai`, `openai_api_compatible`). Conduit serves a model from a workspace provider
(`workspace:<id>`), the server's own (`local`, `openai_api_compatible` when the server has an
endpoint configured) or the default chain (`default`, `""` or none: the workspace's default
provider, else the server's). What a write leaves in `model.provider` is always one of those:

- a Conduit value is kept: `default`, `""`, none, `local`, `workspace:<id>` of this workspace,
  and `openai_api_compatible` when the server has an endpoint;
- any other name goes to the workspace provider that lists the node's model (`model.name`) in
  its `models` (one named like the Dify provider first, then the default, then the oldest),
  else to a workspace provider named like the Dify provider that accepts any model (an empty
  `models` list), else to `default`, with a warning saying what will serve it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from conduit.db.models import ProviderCredential
from conduit.services.model_providers import (
    DEFAULT_PROVIDERS,
    WORKSPACE_PREFIX,
    readable_providers,
    workspace_reference,
)

DEFAULT = "default"
# The model a node of these types asks, at these places in its `data`.
MODEL_PLACES: dict[str, tuple[tuple[str, ...], ...]] = {
    "llm": (("model",),),
    "question-classifier": (("model",),),
    "parameter-extractor": (("model",),),
    "knowledge-retrieval": (("single_retrieval_config", "model"), ("metadata_model_config",)),
    "agent": (("agent_parameters", "model", "value"),),
}


@dataclass(frozen=True)
class ProviderMapping:
    """Where a model was named, what the file said, and what is stored now."""

    where: str
    model: str
    original: Any
    provider: str
    matched: bool  # False: no provider of this workspace matched; the default chain serves it

    def to_dict(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "model": self.model,
            "from": self.original,
            "to": self.provider,
            "matched": self.matched,
        }


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass
class ProviderMapper:
    """Maps the model providers of one write, for one workspace; collects what it did."""

    providers: list[ProviderCredential]
    server_provider: str  # "local" | "openai_api_compatible": what serves `default` last
    mappings: list[ProviderMapping] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, session: Session, tenant_id: str, server_provider: str) -> ProviderMapper:
        query = readable_providers(tenant_id).order_by(
            ProviderCredential.created_at, ProviderCredential.id
        )
        return cls(list(session.scalars(query)), server_provider)

    def map_graph(self, graph: dict[str, Any]) -> dict[str, Any]:
        """A copy of `graph` whose model nodes name providers of this server."""
        mapped = copy.deepcopy(graph)
        for node_id, title, holder, key, where in _model_places(mapped):
            holder[key] = self.map_model(holder[key], f"node {node_id!r} ({title}) {where}")
        return mapped

    def map_model(self, model: dict[str, Any], where: str) -> dict[str, Any]:
        """A copy of a DSL `model {provider, name, ...}` naming a provider of this server."""
        original = model.get("provider")
        raw_name = model.get("name") or model.get("model")  # (an agent node's: `model`)
        name = raw_name if isinstance(raw_name, str) else ""
        provider, matched = self._resolve(original, name)
        if provider != original:
            model = {**model, "provider": provider}
        if original not in DEFAULT_PROVIDERS or provider != original:
            self.mappings.append(ProviderMapping(where, name, original, provider, matched))
        if not matched:
            self.warnings.append(
                f"{where}: no model provider of this workspace matches {original!r} "
                f"(model {name!r}); {self._default_description()} will serve it"
            )
        return model

    def _resolve(self, original: Any, model: str) -> tuple[str, bool]:
        if original in DEFAULT_PROVIDERS or original == "local":
            return original, True
        if not isinstance(original, str):
            return DEFAULT, False
        if original.startswith(WORKSPACE_PREFIX):
            wanted = original.removeprefix(WORKSPACE_PREFIX)
            if any(row.id == wanted for row in self.providers):
                return original, True
        if original == "openai_api_compatible" and self.server_provider == original:
            return original, True
        found = self._match(original.rsplit("/", 1)[-1], model)
        if found is not None:
            return workspace_reference(found.id), True
        return DEFAULT, False

    def _match(self, plugin: str, model: str) -> ProviderCredential | None:
        """The workspace provider that serves `model` for a Dify provider named `plugin`."""
        named = [row for row in self.providers if _key(row.name) == _key(plugin)]
        listing = [row for row in self.providers if model and model in (row.models or [])]
        listing.sort(key=lambda row: (row not in named, not row.is_default))
        if listing:
            return listing[0]
        return next((row for row in named if not row.models), None)

    def _default_description(self) -> str:
        default = next((row for row in self.providers if row.is_default), None)
        if default is not None:
            return f"the workspace's default model provider {default.name!r}"
        if self.server_provider == "local":
            return "the server's local model"
        return "the server's OpenAI-compatible endpoint"


def _model_places(
    graph: dict[str, Any],
) -> Iterator[tuple[str, str, dict[str, Any], str, str]]:
    """(node id, title, the dict holding a model, its key, where) of each model in a graph."""
    nodes = graph.get("nodes")
    for node in nodes if isinstance(nodes, list) else []:
        data = node.get("data") if isinstance(node, dict) else None
        if not isinstance(data, dict):
            continue
        for path in MODEL_PLACES.get(str(data.get("type")), ()):
            holder: Any = data
            for part in path[:-1]:
                holder = holder.get(part) if isinstance(holder, dict) else None
            if isinstance(holder, dict) and isinstance(holder.get(path[-1]), dict):
                title = str(data.get("title") or node.get("id"))
                yield str(node.get("id")), title, holder, path[-1], ".".join(path)
