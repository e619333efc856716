"""External knowledge bases (Dify's): a dataset whose passages come from a service of its own
that speaks Dify's External Knowledge API — `POST {endpoint}/retrieval` with `Authorization:
Bearer {api_key}` and `{knowledge_id, query, retrieval_setting: {top_k, score_threshold}}`,
answering `{"records": [{content, score, title, metadata}]}`.

A workspace keeps its connections (`external_knowledge_apis`: endpoint, the key encrypted
with the server's secret, shown masked); an external dataset (`provider: external`) is bound
to one of them and a knowledge id (`external_knowledge_bindings`); its
`external_retrieval_model` (`{top_k, score_threshold, score_threshold_enabled}`) is kept in
the dataset's `retrieval_model`. A connection is checked when it is made (Dify's probe: 403
and 404 refuse it), and every request goes through the SSRF guard (`infra/ssrf.py`, the
`CONDUIT_WEBHOOK_ALLOWED_*` allow-list): the endpoint's host is resolved, checked, and the
checked address is the one connected to, at every call. A connection in use by a dataset
cannot be deleted (Dify's would leave its datasets failing).

Search (`ExternalKnowledge.search`): the service's records, checked and cut to `top_k` and
the threshold here as well; a failure is `ExternalKnowledgeFailed` (502) naming what went
wrong. An app's run skips a failing external dataset with a warning (the run still answers
from its other datasets), as Dify does.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from conduit.db.models import (
    Dataset,
    ExternalKnowledgeApi,
    ExternalKnowledgeBinding,
    utcnow,
)
from conduit.errors import ConduitError, Conflict, InvalidParam, NotFound
from conduit.infra import outbound
from conduit.infra.crypto import DecryptionError, cipher, mask
from conduit.infra.outbound import Answer
from conduit.infra.ssrf import AllowList
from conduit.services._like import contains

logger = logging.getLogger(__name__)

EXTERNAL = "external"
API_NOT_FOUND = "API template not found."
NAME_MAX = 100
ENDPOINT_MAX = 2048
KNOWLEDGE_ID_MAX = 512
HIDDEN = "[__HIDDEN__]"  # what Dify's console sends back for a key it did not change
TIMEOUT = 10.0
RESPONSE_MAX = 10 * 1024 * 1024
TOP_K_MAX = 100
DEFAULT_SETTING: dict[str, Any] = {
    "top_k": 2,
    "score_threshold": 0.0,
    "score_threshold_enabled": False,
}


class ExternalKnowledgeFailed(ConduitError):
    """The external knowledge service did not answer as its API says it must."""

    code = "external_knowledge_error"
    status = 502
    default_message = "The external knowledge API failed."


class ExternalKnowledgeApiInUse(Conflict):
    code = "external_knowledge_api_in_use"


# --- connections --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiFields:
    """A connection's fields from Dify's body `{name, description?, settings: {endpoint,
    api_key}}`, checked (None: not given)."""

    name: str | None
    description: str | None
    endpoint: str | None
    api_key: str | None

    @classmethod
    def parse(cls, body: dict[str, Any], *, creating: bool) -> ApiFields:
        name = body.get("name")
        if creating or name is not None:
            if not isinstance(name, str) or not 1 <= len(name.strip()) <= NAME_MAX:
                raise InvalidParam(f"name must be between 1 and {NAME_MAX} characters.")
            name = name.strip()
        description = body.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 400):
            raise InvalidParam("description must be a string of at most 400 characters.")
        settings = body.get("settings")
        if settings is None and not creating:
            return cls(name, description, None, None)
        if not isinstance(settings, dict) or not settings:
            raise InvalidParam("settings is required: {endpoint, api_key}.")
        endpoint = settings.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint.strip():
            raise InvalidParam("settings.endpoint is required.")
        endpoint = endpoint.strip().rstrip("/")
        if len(endpoint) > ENDPOINT_MAX:
            raise InvalidParam(f"settings.endpoint must be at most {ENDPOINT_MAX} characters.")
        if not endpoint.lower().startswith(("http://", "https://")):
            raise InvalidParam(
                f"invalid endpoint: {endpoint}/retrieval must start with http:// or https://"
            )
        if "?" in endpoint or "#" in endpoint:
            raise InvalidParam(
                "settings.endpoint must be a base URL without a query or a fragment "
                "(/retrieval is added to it)."
            )
        api_key = settings.get("api_key")
        if not isinstance(api_key, str) or not api_key.strip():
            raise InvalidParam("settings.api_key is required.")
        api_key = api_key.strip()
        readable = api_key.isascii() and api_key.isprintable()
        if len(api_key) > 4096 or not (readable or is_kept(api_key)):
            raise InvalidParam(
                "settings.api_key must be printable ASCII of at most 4096 characters."
            )
        return cls(name, description, endpoint, api_key.strip())


def get_api(session: Session, tenant_id: str, api_id: str) -> ExternalKnowledgeApi:
    try:
        uuid.UUID(api_id)
    except ValueError:
        raise NotFound(API_NOT_FOUND) from None
    found = session.scalars(
        select(ExternalKnowledgeApi).where(
            ExternalKnowledgeApi.id == api_id, ExternalKnowledgeApi.tenant_id == tenant_id
        )
    ).first()
    if found is None:
        raise NotFound(API_NOT_FOUND)
    return found


def list_apis(
    session: Session, tenant_id: str, *, page: int, limit: int, keyword: str | None
) -> tuple[list[ExternalKnowledgeApi], int]:
    query = select(ExternalKnowledgeApi).where(ExternalKnowledgeApi.tenant_id == tenant_id)
    if keyword:
        query = query.where(contains(ExternalKnowledgeApi.name, keyword))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(
        query.order_by(ExternalKnowledgeApi.created_at.desc(), ExternalKnowledgeApi.id)
        .offset((page - 1) * limit)
        .limit(limit)
    )
    return list(items), int(total)


def _unique_name(session: Session, tenant_id: str, name: str, api_id: str | None = None) -> None:
    clash = select(ExternalKnowledgeApi.id).where(
        ExternalKnowledgeApi.tenant_id == tenant_id, ExternalKnowledgeApi.name == name
    )
    if api_id is not None:
        clash = clash.where(ExternalKnowledgeApi.id != api_id)
    if session.scalar(clash.limit(1)) is not None:
        raise Conflict(f"An external knowledge API named '{name}' already exists.")


def create_api(
    session: Session, *, tenant_id: str, account_id: str, fields: ApiFields, secret: str
) -> ExternalKnowledgeApi:
    """A new connection (its endpoint probed by the caller first, outside any transaction:
    a 403 or a 404, or no answer at all, refuse it)."""
    assert fields.name is not None and fields.endpoint and fields.api_key
    _unique_name(session, tenant_id, fields.name)
    found = ExternalKnowledgeApi(
        tenant_id=tenant_id,
        name=fields.name,
        description=fields.description or "",
        endpoint=fields.endpoint,
        encrypted_api_key=cipher(secret).encrypt(fields.api_key),
        created_by=account_id,
    )
    try:
        with session.begin_nested():
            session.add(found)
    except IntegrityError:  # the same name, made meanwhile
        raise Conflict(f"An external knowledge API named '{fields.name}' already exists.") from None
    return found


def is_kept(api_key: str | None) -> bool:
    """Whether a change's key means "the stored one": Dify's hidden marker, or a masked key."""
    return api_key is not None and (api_key == HIDDEN or "…" in api_key)


def kept_key(api: ExternalKnowledgeApi, fields: ApiFields, secret: str) -> str | None:
    """The key a change's settings mean: the stored one for the hidden marker or the masked
    key (only with the same endpoint: the stored key never goes to a new one), else the new
    one; None when no settings were given."""
    if fields.endpoint is None or fields.api_key is None:
        return None
    if not is_kept(fields.api_key):
        return fields.api_key
    if fields.endpoint != api.endpoint:
        raise InvalidParam(
            "settings.api_key: a new endpoint needs the API key typed again (the stored key is "
            "only ever sent to the endpoint it was given for)."
        )
    stored = _decrypted(api, secret)
    if stored is None or fields.api_key not in (HIDDEN, mask(stored)):
        raise InvalidParam("settings.api_key: the stored key cannot be read: type it again.")
    return stored


def update_api(
    session: Session, api: ExternalKnowledgeApi, *, account_id: str, fields: ApiFields,
    key: str | None, secret: str,
) -> ExternalKnowledgeApi:  # fmt: skip
    """New name, description, endpoint or key (`key`: `kept_key`'s, probed by the caller
    outside any transaction when it or the endpoint changed)."""
    if fields.name is not None:
        _unique_name(session, api.tenant_id, fields.name, api.id)
        api.name = fields.name
    if fields.description is not None:
        api.description = fields.description
    if fields.endpoint is not None and key is not None:
        api.endpoint = fields.endpoint
        api.encrypted_api_key = cipher(secret).encrypt(key)
    api.updated_by = account_id
    api.updated_at = utcnow()
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"An external knowledge API named '{api.name}' already exists.") from None
    return api


def _decrypted(api: ExternalKnowledgeApi, secret: str) -> str | None:
    try:
        return cipher(secret).decrypt(api.encrypted_api_key)
    except DecryptionError:
        return None


def bindings_of(session: Session, api_ids: Sequence[str]) -> dict[str, list[dict[str, str]]]:
    """Each connection's datasets ({id, name}), by connection id."""
    found: dict[str, list[dict[str, str]]] = {api_id: [] for api_id in api_ids}
    if api_ids:
        for api_id, dataset_id, name in session.execute(
            select(ExternalKnowledgeBinding.external_knowledge_api_id, Dataset.id, Dataset.name)
            .join(Dataset, Dataset.id == ExternalKnowledgeBinding.dataset_id)
            .where(ExternalKnowledgeBinding.external_knowledge_api_id.in_(api_ids))
            .order_by(Dataset.name)
        ).tuples():
            found[api_id].append({"id": dataset_id, "name": name})
    return found


def delete_api(session: Session, api: ExternalKnowledgeApi) -> None:
    """Remove a connection no dataset uses (else 409 naming them)."""
    used = bindings_of(session, [api.id])[api.id]
    if used:
        names = ", ".join(f"'{d['name']}'" for d in used[:5])
        raise ExternalKnowledgeApiInUse(
            f"The external knowledge API '{api.name}' is used by {len(used)} dataset(s) "
            f"({names}): delete them or bind them elsewhere first."
        )
    session.delete(api)
    session.flush()


def use_check(session: Session, api: ExternalKnowledgeApi) -> dict[str, Any]:
    count = len(bindings_of(session, [api.id])[api.id])
    return {"is_using": count > 0, "count": count}


def api_views(
    session: Session, apis: Sequence[ExternalKnowledgeApi], secret: str
) -> list[dict[str, Any]]:
    """Dify's external knowledge API objects, the key masked."""
    bound = bindings_of(session, [api.id for api in apis])
    return [
        {
            "id": api.id,
            "tenant_id": api.tenant_id,
            "name": api.name,
            "description": api.description,
            "settings": {"endpoint": api.endpoint, "api_key": mask(_decrypted(api, secret))},
            **(
                {}
                if _decrypted(api, secret) is not None
                else {"error": "The stored API key cannot be decrypted: set it again."}
            ),
            "dataset_bindings": bound[api.id],
            "created_by": api.created_by,
            "created_at": api.created_at.isoformat(),
        }
        for api in apis
    ]


# --- external datasets ---------------------------------------------------------------------


def parse_setting(value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """An `external_retrieval_model` over `base` (the dataset's, else Dify's default),
    checked."""
    merged = {**DEFAULT_SETTING, **(base or {})}
    if value is None:
        return merged
    if not isinstance(value, dict):
        raise InvalidParam("external_retrieval_model must be an object.")
    merged.update({k: v for k, v in value.items() if k in DEFAULT_SETTING and v is not None})
    top_k = merged["top_k"]
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= TOP_K_MAX:
        raise InvalidParam(
            f"external_retrieval_model.top_k must be an integer from 1 to {TOP_K_MAX}."
        )
    threshold = merged["score_threshold"]
    if (
        not isinstance(threshold, int | float)
        or isinstance(threshold, bool)
        or not (0 <= threshold <= 1)
    ):
        raise InvalidParam("external_retrieval_model.score_threshold must be a number from 0 to 1.")
    if not isinstance(merged["score_threshold_enabled"], bool):
        raise InvalidParam("external_retrieval_model.score_threshold_enabled must be a boolean.")
    return {
        "top_k": top_k,
        "score_threshold": float(threshold),
        "score_threshold_enabled": merged["score_threshold_enabled"],
    }


def check_binding(session: Session, tenant_id: str, body: dict[str, Any]) -> tuple[str, str]:
    """(connection id, knowledge id) of a create's body, both required, the connection the
    workspace's."""
    api_id = body.get("external_knowledge_api_id")
    knowledge_id = body.get("external_knowledge_id")
    if not isinstance(api_id, str) or not api_id:
        raise InvalidParam("external_knowledge_api_id is required for an external dataset.")
    if not isinstance(knowledge_id, str) or not knowledge_id.strip():
        raise InvalidParam("external_knowledge_id is required for an external dataset.")
    if len(knowledge_id) > KNOWLEDGE_ID_MAX:
        raise InvalidParam(f"external_knowledge_id must be at most {KNOWLEDGE_ID_MAX} characters.")
    return get_api(session, tenant_id, api_id).id, knowledge_id.strip()


def bind(
    session: Session, dataset: Dataset, api_id: str, knowledge_id: str, account_id: str
) -> None:
    session.add(
        ExternalKnowledgeBinding(
            tenant_id=dataset.tenant_id,
            dataset_id=dataset.id,
            external_knowledge_api_id=api_id,
            external_knowledge_id=knowledge_id,
            created_by=account_id,
        )
    )
    session.flush()


def rebind(session: Session, dataset: Dataset, body: dict[str, Any]) -> None:
    """A PATCH's new connection or knowledge id for an external dataset (either or both)."""
    if body.get("external_knowledge_api_id") is None and body.get("external_knowledge_id") is None:
        return
    binding = _binding(session, dataset.id)
    merged = {
        "external_knowledge_api_id": binding.external_knowledge_api_id,
        "external_knowledge_id": binding.external_knowledge_id,
        **{k: v for k, v in body.items() if k.startswith("external_knowledge_") and v is not None},
    }
    binding.external_knowledge_api_id, binding.external_knowledge_id = check_binding(
        session, dataset.tenant_id, merged
    )
    session.flush()


def _binding(session: Session, dataset_id: str) -> ExternalKnowledgeBinding:
    found = session.scalars(
        select(ExternalKnowledgeBinding).where(ExternalKnowledgeBinding.dataset_id == dataset_id)
    ).first()
    if found is None:  # an external dataset is made with its binding, in one transaction
        raise NotFound("External knowledge binding not found.")
    return found


def infos(session: Session, datasets: Sequence[Dataset]) -> dict[str, dict[str, Any]]:
    """Dify's `external_knowledge_info` of the external ones among `datasets`, by id."""
    ids = [d.id for d in datasets if d.provider == EXTERNAL]
    if not ids:
        return {}
    return {
        dataset_id: {
            "external_knowledge_id": knowledge_id,
            "external_knowledge_api_id": api_id,
            "external_knowledge_api_name": name,
            "external_knowledge_api_endpoint": endpoint,
        }
        for dataset_id, knowledge_id, api_id, name, endpoint in session.execute(
            select(
                ExternalKnowledgeBinding.dataset_id,
                ExternalKnowledgeBinding.external_knowledge_id,
                ExternalKnowledgeApi.id,
                ExternalKnowledgeApi.name,
                ExternalKnowledgeApi.endpoint,
            )
            .join(
                ExternalKnowledgeApi,
                ExternalKnowledgeApi.id == ExternalKnowledgeBinding.external_knowledge_api_id,
            )
            .where(ExternalKnowledgeBinding.dataset_id.in_(ids))
        ).tuples()
    }


# --- the service's API ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """What a search of one external dataset needs, read in the caller's session."""

    endpoint: str
    api_key: str
    knowledge_id: str


def source(session: Session, dataset: Dataset, secret: str) -> Source:
    binding = _binding(session, dataset.id)
    api = session.scalars(
        select(ExternalKnowledgeApi).where(
            ExternalKnowledgeApi.id == binding.external_knowledge_api_id,
            ExternalKnowledgeApi.tenant_id == dataset.tenant_id,
        )
    ).first()
    if api is None:
        raise NotFound(API_NOT_FOUND)
    key = _decrypted(api, secret)
    if key is None:
        raise ExternalKnowledgeFailed(
            f"The API key of the external knowledge API '{api.name}' cannot be decrypted (was "
            "the server's secret changed?): set it again in the console."
        )
    return Source(api.endpoint, key, binding.external_knowledge_id)


class ExternalKnowledge:
    """Calls external knowledge services, behind the SSRF guard. One per process."""

    def __init__(self, allow: AllowList, *, timeout: float = TIMEOUT) -> None:
        self._allow = allow
        self._timeout = timeout

    def probe(self, endpoint: str, api_key: str) -> None:
        """Dify's check of a new connection: a 403 (the key) or a 404 (the endpoint), or no
        answer, refuse it; any other answer passes."""
        url = f"{endpoint}/retrieval"
        body = {
            "knowledge_id": "",
            "query": "",
            "retrieval_setting": {"top_k": 1, "score_threshold": 0.0},
        }
        try:
            response = self._post(url, api_key, body, field="settings.endpoint")
        except httpx.HTTPError:
            raise InvalidParam(f"failed to connect to the endpoint: {url}") from None
        if response.status_code == 403:
            raise InvalidParam("Forbidden: Authorization failed with the provided api_key")
        if response.status_code == 404 and not _service_error(response.content):
            # (A 404 that is the service's own error, `{"error_code": 2001, ...}` for the
            # probe's empty knowledge id, says the service is there.)
            raise InvalidParam(f"Not Found: failed to connect to the endpoint: {url}")
        if response.status_code == 502:
            raise InvalidParam(f"Bad Gateway: failed to connect to the endpoint: {url}")

    def search(
        self,
        found: Source,
        query: str,
        setting: dict[str, Any],
        metadata_condition: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The service's records for `query` ({content, title, score, metadata}), best
        first, at most `top_k`, none under the threshold when it is enabled (scores clamped to
        [0, 1]). `metadata_condition`: Dify's metadata filter, passed on as Dify does."""
        threshold = setting["score_threshold"] if setting.get("score_threshold_enabled") else 0.0
        body: dict[str, Any] = {
            "knowledge_id": found.knowledge_id,
            "query": query,
            "retrieval_setting": {"top_k": setting["top_k"], "score_threshold": threshold},
        }
        if metadata_condition:
            body["metadata_condition"] = metadata_condition
        url = f"{found.endpoint}/retrieval"
        try:
            response = self._post(url, found.api_key, body, field="external knowledge endpoint")
        except httpx.HTTPError as error:
            raise ExternalKnowledgeFailed(
                f"The external knowledge API at {url} did not answer: {type(error).__name__}"
                f"{': ' + str(error) if str(error) else ''}"
            ) from None
        if response.status_code != 200:
            raise ExternalKnowledgeFailed(
                f"The external knowledge API at {url} answered HTTP {response.status_code}: "
                f"{response.text[:300]}"
            )
        try:
            parsed = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            parsed = None
        records = parsed.get("records", []) if isinstance(parsed, dict) else None
        if not isinstance(records, list):
            raise ExternalKnowledgeFailed(
                f"The external knowledge API at {url} answered something other than "
                '{"records": [...]}.'
            )
        kept = []
        for record in records:
            if not isinstance(record, dict) or not isinstance(record.get("content"), str):
                continue  # a record without text gives a run nothing
            given = record.get("score")
            score = (
                min(1.0, max(0.0, float(given)))
                if isinstance(given, int | float) and not isinstance(given, bool)
                else 0.0
            )
            if score < threshold:
                continue
            title = record.get("title")
            metadata = record.get("metadata")
            kept.append(
                {
                    "content": record["content"],
                    "title": title if isinstance(title, str) else None,
                    "score": score,
                    "metadata": metadata if isinstance(metadata, dict) else {},
                }
            )
        kept.sort(key=lambda item: -item["score"])
        return kept[: setting["top_k"]]

    def _post(self, url: str, api_key: str, body: dict[str, Any], *, field: str) -> Answer:
        """POST behind the SSRF guard (`infra/outbound.py`), the answer read up to
        `RESPONSE_MAX`."""
        try:
            return outbound.request(
                "POST",
                url,
                self._allow,
                field=field,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"},
                content=orjson.dumps(body),
                timeout=self._timeout,
                max_bytes=RESPONSE_MAX,
            )
        except outbound.AnswerTooLarge:
            raise ExternalKnowledgeFailed(
                f"The external knowledge API at {url} answered more than {RESPONSE_MAX} bytes."
            ) from None


def _service_error(content: bytes) -> bool:
    """Whether a body is the External Knowledge API's error object."""
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and "error_code" in parsed


def record_view(record: dict[str, Any]) -> dict[str, Any]:
    """Dify's hit-testing record of an external dataset."""
    return {
        "content": record["content"],
        "title": record["title"],
        "score": round(record["score"], 6),
        "metadata": record["metadata"],
    }


def resource(
    position: int, dataset_id: str, dataset_name: str, record: dict[str, Any]
) -> dict[str, Any]:
    """Dify's `RetrieverResource` of an external record (no segment of ours)."""
    metadata = record["metadata"]
    document_id = metadata.get("document_id")
    return {
        "position": position,
        "dataset_id": dataset_id,
        "dataset_name": dataset_name,
        "document_id": document_id if isinstance(document_id, str) else record["title"],
        "document_name": record["title"],
        "data_source_type": EXTERNAL,
        "segment_id": None,
        "retriever_from": "api",
        "score": round(record["score"], 6),
        "hit_count": None,
        "word_count": len(record["content"]),
        "segment_position": None,
        "index_node_hash": None,
        "content": record["content"],
        "created_at": None,
    }
