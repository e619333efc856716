"""Datasets (knowledge bases) of a workspace: create, list, read, update, delete, and the
Knowledge API's view of one.

Every query goes through `_readable(tenant_id)`. A dataset's name is unique in its workspace
(409 `dataset_name_duplicate`, decided by the unique index, so two concurrent creates cannot
both win). A dataset an app uses cannot be deleted (409 `dataset_in_use`). `permission` is
Dify's: `only_me` datasets of another member are left out of a list unless `include_all`.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from conduit.db.models import (
    Account,
    AppDatasetJoin,
    Dataset,
    DatasetMetadata,
    DatasetPermission,
    Document,
    IndexingStatus,
    IndexingTechnique,
    Membership,
    Tag,
    TagBinding,
    utcnow,
)
from conduit.errors import DatasetInUse, DatasetNameDuplicate, Forbidden, InvalidParam, NotFound
from conduit.services._like import contains
from conduit.services.datasets import embedders, external, keywords, rerank
from conduit.services.datasets.documents import forget_dataset_files
from conduit.signals import signals

NAME_MAX = 40
DESCRIPTION_MAX = 400
SEARCH_METHODS = ("semantic_search", "full_text_search", "keyword_search", "hybrid_search")
TOP_K_MAX = 100
DATASET_NOT_FOUND = "Dataset not found."
API_DISABLED = "Dataset api access is not enabled."
NO_PERMISSION = "You do not have permission to access this dataset."


def _readable(tenant_id: str) -> Select[Dataset]:
    """The only way to select datasets: scoped to one workspace."""
    return select(Dataset).where(Dataset.tenant_id == tenant_id)


def get_dataset(session: Session, tenant_id: str, dataset_id: str, *, api: bool = False) -> Dataset:
    """404 `Dataset not found.` for a malformed, unknown or other workspace's id; with `api`,
    403 when the dataset's Knowledge API access is switched off."""
    try:
        uuid.UUID(dataset_id)
    except ValueError:
        raise NotFound(DATASET_NOT_FOUND) from None
    found = session.scalars(_readable(tenant_id).where(Dataset.id == dataset_id)).first()
    if found is None:
        raise NotFound(DATASET_NOT_FOUND)
    if api and not found.enable_api:
        raise Forbidden(API_DISABLED)
    return found


def get_member_dataset(session: Session, member: Membership, dataset_id: str) -> Dataset:
    """A dataset as a workspace member may see it: 403 for another member's `only_me` one."""
    dataset = get_dataset(session, member.tenant_id, dataset_id)
    if dataset.permission == DatasetPermission.ONLY_ME and dataset.created_by != member.account_id:
        raise Forbidden(NO_PERMISSION)
    return dataset


@dataclass(frozen=True, slots=True)
class DatasetFields:
    """A create's or an update's fields, validated; None is "not given"."""

    name: str | None = None
    description: str | None = None
    indexing_technique: IndexingTechnique | None = None
    permission: DatasetPermission | None = None
    embedding_model: str | None = None
    embedding_model_provider: str | None = None
    retrieval_model: dict[str, Any] | None = None
    # An external dataset's (`provider: external`; services/datasets/external.py).
    provider: str | None = None
    external_retrieval_model: dict[str, Any] | None = None
    external_knowledge_api_id: str | None = None
    external_knowledge_id: str | None = None

    @classmethod
    def parse(cls, body: dict[str, Any], *, creating: bool) -> DatasetFields:
        name = body.get("name")
        if creating or "name" in body:
            if not isinstance(name, str) or not 1 <= len(name.strip()) <= NAME_MAX:
                raise InvalidParam(f"name must be between 1 and {NAME_MAX} characters.")
            name = name.strip()
        description = body.get("description")
        if description is not None and (
            not isinstance(description, str) or len(description) > DESCRIPTION_MAX
        ):
            raise InvalidParam(
                f"description must be a string of at most {DESCRIPTION_MAX} characters."
            )
        provider = body.get("provider")
        if provider not in (None, "vendor", external.EXTERNAL):
            raise InvalidParam("provider must be one of: vendor, external.")
        setting = body.get("external_retrieval_model")
        if setting is not None:
            external.parse_setting(setting)  # checked; kept as given, merged where it is used
        return cls(
            provider=provider,
            external_retrieval_model=setting,
            external_knowledge_api_id=_text(body, "external_knowledge_api_id"),
            external_knowledge_id=_text(body, "external_knowledge_id"),
            name=name,
            description=description,
            indexing_technique=_choice(body, "indexing_technique", IndexingTechnique),
            permission=_choice(body, "permission", DatasetPermission),
            # Checked against what the workspace offers by `create_dataset`/`update_dataset`.
            embedding_model=_text(body, "embedding_model"),
            embedding_model_provider=_text(body, "embedding_model_provider"),
            retrieval_model=_retrieval_model(body.get("retrieval_model")),
        )


_Choice = TypeVar("_Choice", IndexingTechnique, DatasetPermission)


def _choice(body: dict[str, Any], field: str, kind: type[_Choice]) -> _Choice | None:
    value = body.get(field)
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise InvalidParam(f"{field} must be one of: {allowed}.") from None


def _text(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise InvalidParam(f"{field} must be a string.")
    return value or None


def _retrieval_model(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidParam("retrieval_model must be an object.")
    model = default_retrieval_model()
    method = value.get("search_method", model["search_method"])
    if method not in SEARCH_METHODS:
        raise InvalidParam(
            f"retrieval_model.search_method must be one of: {', '.join(SEARCH_METHODS)}."
        )
    model["search_method"] = method
    top_k = value.get("top_k", model["top_k"])
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= TOP_K_MAX:
        raise InvalidParam(f"retrieval_model.top_k must be an integer from 1 to {TOP_K_MAX}.")
    model["top_k"] = top_k
    for flag in ("score_threshold_enabled", "reranking_enable"):
        if flag in value:
            if not isinstance(value[flag], bool):
                raise InvalidParam(f"retrieval_model.{flag} must be a boolean.")
            model[flag] = value[flag]
    threshold = value.get("score_threshold")
    if threshold is not None:
        if (
            not isinstance(threshold, int | float)
            or isinstance(threshold, bool)
            or not (0 <= threshold <= 1)
        ):
            raise InvalidParam("retrieval_model.score_threshold must be a number from 0 to 1.")
        model["score_threshold"] = float(threshold)
    reranker = value.get("reranking_model")
    if reranker is not None:
        if not isinstance(reranker, dict) or not all(
            isinstance(reranker.get(key) or "", str)
            for key in ("reranking_provider_name", "reranking_model_name")
        ):
            raise InvalidParam(
                "retrieval_model.reranking_model must be {reranking_provider_name, "
                "reranking_model_name} (strings)."
            )
        model["reranking_model"] = {
            "reranking_provider_name": reranker.get("reranking_provider_name") or "",
            "reranking_model_name": reranker.get("reranking_model_name") or "",
        }
    mode = check_reranking_mode(value.get("reranking_mode"))
    weights = value.get("weights")
    if weights is not None:
        if not isinstance(weights, dict):
            raise InvalidParam("retrieval_model.weights must be an object.")
        vector = (weights.get("vector_setting") or {}).get("vector_weight")
        keyword = (weights.get("keyword_setting") or {}).get("keyword_weight")
        for name, weight in (("vector_weight", vector), ("keyword_weight", keyword)):
            if (
                not isinstance(weight, int | float)
                or isinstance(weight, bool)
                or not 0 <= weight <= 1
            ):
                raise InvalidParam(f"retrieval_model.weights: {name} must be a number from 0 to 1.")
        assert isinstance(vector, int | float) and isinstance(keyword, int | float)
        model["weights"] = {
            "weight_type": weights.get("weight_type", "customized"),
            "vector_setting": {"vector_weight": float(vector)},
            "keyword_setting": {"keyword_weight": float(keyword)},
        }
        model["reranking_mode"] = "weighted_score"
    if mode is not None:
        model["reranking_mode"] = mode
    return model


# How a hybrid search fuses its two lists: Dify's weighted sum, or by rank (Conduit's), then
# (Dify's `reranking_model`) a rerank model's order of the fused candidates.
RERANKING_MODES = ("weighted_score", "reciprocal_rank_fusion", "reranking_model")


def check_reranking_mode(mode: Any) -> str | None:
    if mode is None:
        return None
    if mode not in RERANKING_MODES:
        raise InvalidParam(
            f"retrieval_model.reranking_mode must be one of: {', '.join(RERANKING_MODES)}."
        )
    return str(mode)


def default_retrieval_model() -> dict[str, Any]:
    return {
        "search_method": "semantic_search",
        "reranking_enable": False,
        "reranking_mode": None,
        "reranking_model": {"reranking_provider_name": "", "reranking_model_name": ""},
        "weights": None,
        "top_k": 2,
        "score_threshold_enabled": False,
        "score_threshold": None,
    }


def create_dataset(
    session: Session, *, tenant_id: str, account_id: str, fields: DatasetFields
) -> Dataset:
    assert fields.name is not None
    if fields.provider == external.EXTERNAL:
        return _create_external(session, tenant_id=tenant_id, account_id=account_id, fields=fields)
    provider, model = embedders.check_choice(
        session, tenant_id, fields.embedding_model_provider, fields.embedding_model
    ) or (None, None)
    rerank.check(session, tenant_id, fields.retrieval_model)
    dataset = Dataset(
        tenant_id=tenant_id,
        name=fields.name,
        description=fields.description or "",
        indexing_technique=fields.indexing_technique,
        permission=fields.permission or DatasetPermission.ONLY_ME,
        embedding_model=model,
        embedding_model_provider=provider,
        retrieval_model=fields.retrieval_model,
        created_by=account_id,
    )
    _save(session, dataset)
    return dataset


def _create_external(
    session: Session, *, tenant_id: str, account_id: str, fields: DatasetFields
) -> Dataset:
    """An external dataset and its binding (both ids required, the connection the
    workspace's), in the caller's transaction; nothing of Conduit's index applies to it."""
    assert fields.name is not None
    api_id, knowledge_id = external.check_binding(
        session,
        tenant_id,
        {
            "external_knowledge_api_id": fields.external_knowledge_api_id,
            "external_knowledge_id": fields.external_knowledge_id,
        },
    )
    dataset = Dataset(
        tenant_id=tenant_id,
        name=fields.name,
        description=fields.description or "",
        provider=external.EXTERNAL,
        indexing_technique=None,
        permission=fields.permission or DatasetPermission.ONLY_ME,
        retrieval_model=external.parse_setting(fields.external_retrieval_model),
        created_by=account_id,
    )
    _save(session, dataset)
    external.bind(session, dataset, api_id, knowledge_id, account_id)
    return dataset


def update_dataset(
    session: Session, dataset: Dataset, *, account_id: str, fields: DatasetFields
) -> Dataset:
    if dataset.provider == external.EXTERNAL:
        return _update_external(session, dataset, account_id=account_id, fields=fields)
    choice = None
    if fields.embedding_model or fields.embedding_model_provider:
        choice = embedders.check_choice(
            session,
            dataset.tenant_id,
            fields.embedding_model_provider or dataset.embedding_model_provider,
            fields.embedding_model or dataset.embedding_model,
        )
    changes_index = fields.indexing_technique not in (None, dataset.indexing_technique) or (
        choice is not None and choice != (dataset.embedding_model_provider, dataset.embedding_model)
    )
    rerank.check(session, dataset.tenant_id, fields.retrieval_model)
    if changes_index and _has_documents(session, dataset.id):
        raise InvalidParam(
            "indexing_technique and embedding_model cannot change once the dataset has "
            "documents: create a new dataset for another index."
        )
    changes: dict[str, Any] = {
        name: getattr(fields, name)
        for name in ("name", "description", "indexing_technique", "permission", "retrieval_model")
        if getattr(fields, name) is not None
    }
    if choice is not None:
        changes["embedding_model_provider"], changes["embedding_model"] = choice
    _save(session, dataset, {**changes, "updated_by": account_id, "updated_at": utcnow()})
    return dataset


def _update_external(
    session: Session, dataset: Dataset, *, account_id: str, fields: DatasetFields
) -> Dataset:
    """Name, description, permission, `external_retrieval_model` and the binding."""
    for name in ("indexing_technique", "embedding_model", "embedding_model_provider"):
        if getattr(fields, name) is not None:
            raise InvalidParam(f"{name} does not apply to an external dataset.")
    changes: dict[str, Any] = {
        name: getattr(fields, name)
        for name in ("name", "description", "permission")
        if getattr(fields, name) is not None
    }
    if fields.external_retrieval_model is not None:
        changes["retrieval_model"] = external.parse_setting(
            fields.external_retrieval_model, dataset.retrieval_model
        )
    external.rebind(
        session,
        dataset,
        {
            "external_knowledge_api_id": fields.external_knowledge_api_id,
            "external_knowledge_id": fields.external_knowledge_id,
        },
    )
    _save(session, dataset, {**changes, "updated_by": account_id, "updated_at": utcnow()})
    return dataset


def _save(session: Session, dataset: Dataset, changes: dict[str, Any] | None = None) -> None:
    """Apply `changes` and flush, in a savepoint; a clash on (workspace, name) is 409. The
    unique index decides, so two concurrent requests for one name cannot both win. (The
    changes are made inside the savepoint: `begin_nested` flushes what is already dirty
    outside it.)"""
    changes = changes or {}
    name = changes.get("name", dataset.name)
    tenant_id, dataset_id = dataset.tenant_id, dataset.id
    try:
        with session.begin_nested():
            for field, value in changes.items():
                setattr(dataset, field, value)
            session.add(dataset)
    except IntegrityError as exc:
        # The savepoint's rollback expired the row's new values: ask with the ones it had.
        others = [Dataset.id != dataset_id] if dataset_id else []
        with session.no_autoflush:
            taken = session.scalar(
                select(Dataset.id)
                .where(Dataset.tenant_id == tenant_id, Dataset.name == name, *others)
                .limit(1)
            )
        if taken is not None:
            raise DatasetNameDuplicate() from exc
        raise


def _has_documents(session: Session, dataset_id: str) -> bool:
    return (
        session.scalar(select(Document.id).where(Document.dataset_id == dataset_id).limit(1))
        is not None
    )


def delete_dataset(session: Session, dataset: Dataset) -> None:
    in_use = session.scalar(
        select(AppDatasetJoin.id).where(AppDatasetJoin.dataset_id == dataset.id).limit(1)
    )
    if in_use is not None:
        raise DatasetInUse()
    forget_dataset_files(session, dataset)
    keywords.remove_dataset(session, dataset.id)
    session.delete(dataset)
    signals.send_after_commit(session, signals.dataset_was_deleted, dataset)


def list_datasets(
    session: Session,
    tenant_id: str,
    *,
    account_id: str,
    page: int,
    limit: int,
    keyword: str | None,
    include_all: bool,
    tag_ids: list[str],
) -> tuple[list[Dataset], int]:
    query = _readable(tenant_id)
    if not include_all:
        query = query.where(
            (Dataset.permission != DatasetPermission.ONLY_ME) | (Dataset.created_by == account_id)
        )
    if keyword:
        query = query.where(contains(Dataset.name, keyword))
    if tag_ids:
        # Datasets with any of the tags (as Dify filters).
        query = query.where(
            Dataset.id.in_(select(TagBinding.target_id).where(TagBinding.tag_id.in_(tag_ids)))
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(
        query.order_by(Dataset.created_at.desc(), Dataset.id)
        .offset((page - 1) * limit)
        .limit(limit)
    )
    return list(items), int(total)


@dataclass(frozen=True, slots=True)
class _Counts:
    documents: int = 0
    available: int = 0
    words: int = 0
    apps: int = 0


def _counts(session: Session, dataset_ids: list[str]) -> dict[str, _Counts]:
    """Documents, available documents, words and apps of each dataset: two GROUP BYs."""
    if not dataset_ids:
        return {}
    available = (
        (Document.indexing_status == IndexingStatus.COMPLETED)
        & Document.enabled.is_(True)
        & Document.archived.is_(False)
    )
    documents = {
        row[0]: row[1:]
        for row in session.execute(
            select(
                Document.dataset_id,
                func.count(),
                func.sum(case((available, 1), else_=0)),
                func.sum(Document.word_count),
            )
            .where(Document.dataset_id.in_(dataset_ids))
            .group_by(Document.dataset_id)
        )
    }
    # (A comprehension, not dict(): a Result has keys(), so dict() would take it for a mapping.)
    apps = {
        dataset_id: count
        for dataset_id, count in session.execute(
            select(AppDatasetJoin.dataset_id, func.count())
            .where(AppDatasetJoin.dataset_id.in_(dataset_ids))
            .group_by(AppDatasetJoin.dataset_id)
        ).tuples()
    }
    return {
        dataset_id: _Counts(
            documents=int(documents.get(dataset_id, (0, 0, 0))[0] or 0),
            available=int(documents.get(dataset_id, (0, 0, 0))[1] or 0),
            words=int(documents.get(dataset_id, (0, 0, 0))[2] or 0),
            apps=int(apps.get(dataset_id, 0)),
        )
        for dataset_id in dataset_ids
    }


def views(session: Session, datasets: list[Dataset]) -> list[dict[str, Any]]:
    """Dify's Dataset objects, with one query for the counts and one for the authors."""
    counts = _counts(session, [d.id for d in datasets])
    author_ids = {d.created_by for d in datasets}
    authors = {
        account_id: name
        for account_id, name in session.execute(
            select(Account.id, Account.name).where(Account.id.in_(author_ids))
        ).tuples()
    }
    ids = [d.id for d in datasets]
    tags = dataset_tags(session, ids)
    bound = external.infos(session, datasets)
    fields: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for field in session.scalars(
        select(DatasetMetadata)
        .where(DatasetMetadata.dataset_id.in_(ids))
        .order_by(DatasetMetadata.created_at, DatasetMetadata.id)
    ):
        fields[field.dataset_id].append({"id": field.id, "name": field.name, "type": field.type})
    return [
        {
            **_view(d, counts[d.id], authors.get(d.created_by), tags[d.id]),
            "doc_metadata": fields[d.id],
            "embedding_available": embedders.available(session, d),
            **(_external_view(d, bound[d.id]) if d.id in bound else {}),
        }
        for d in datasets
    ]


def _external_view(dataset: Dataset, info: dict[str, Any]) -> dict[str, Any]:
    setting = external.parse_setting(None, dataset.retrieval_model)
    return {
        "external_knowledge_info": info,
        "external_retrieval_model": setting,
        "retrieval_model_dict": setting,
        "doc_form": None,
    }


def dataset_tags(session: Session, dataset_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each dataset's tags ({id, name, type}), by dataset id, in one query."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if not dataset_ids:
        return found
    rows = session.execute(
        select(TagBinding.target_id, Tag)
        .join(Tag, Tag.id == TagBinding.tag_id)
        .where(TagBinding.target_id.in_(dataset_ids))
        .order_by(Tag.name, Tag.id)
    ).tuples()
    for target_id, tag in rows:
        found[target_id].append({"id": tag.id, "name": tag.name, "type": tag.type})
    return found


def view(session: Session, dataset: Dataset) -> dict[str, Any]:
    return views(session, [dataset])[0]


def _view(
    dataset: Dataset, counts: _Counts, author: str | None, tags: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "id": dataset.id,
        "name": dataset.name,
        "description": dataset.description,
        "provider": dataset.provider,
        "permission": dataset.permission.value,
        "data_source_type": dataset.data_source_type,
        "indexing_technique": (
            dataset.indexing_technique.value if dataset.indexing_technique else None
        ),
        "app_count": counts.apps,
        "document_count": counts.documents,
        "word_count": counts.words,
        "created_by": dataset.created_by,
        "author_name": author,
        "created_at": int(dataset.created_at.timestamp()),
        "updated_by": dataset.updated_by,
        "updated_at": int(dataset.updated_at.timestamp()),
        "embedding_model": dataset.embedding_model,
        "embedding_model_provider": dataset.embedding_model_provider,
        "retrieval_model_dict": dataset.retrieval_model or default_retrieval_model(),
        "tags": tags,
        "doc_form": dataset.doc_form,
        "external_knowledge_info": {
            "external_knowledge_id": None,
            "external_knowledge_api_id": None,
            "external_knowledge_api_name": None,
            "external_knowledge_api_endpoint": None,
        },
        "external_retrieval_model": {
            "top_k": 2,
            "score_threshold": 0.0,
            "score_threshold_enabled": False,
        },
        "doc_metadata": [],
        "built_in_field_enabled": dataset.built_in_field_enabled,
        "pipeline_id": None,
        "runtime_mode": dataset.runtime_mode,
        "chunk_structure": dataset.chunk_structure,
        "icon_info": dataset.icon_info,
        "is_published": False,
        "total_documents": counts.documents,
        "total_available_documents": counts.available,
        "enable_api": dataset.enable_api,
        "is_multimodal": False,
        "maintainer": author,
        "summary_index_setting": None,
        "partial_member_list": [],
    }
