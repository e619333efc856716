"""Document metadata (Dify's): a dataset's fields (`string`, `number`, `time`), each document's
values (kept in its `doc_metadata`, by field name), Dify's built-in fields, and the documents a
search's `metadata_filtering_conditions` keeps."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conduit.core.rag.metadata import FilterError, parse_filter
from conduit.db.models import Account, Dataset, DatasetMetadata, Document
from conduit.errors import InvalidParam, NotFound

TYPES = ("string", "number", "time")
BUILT_IN = (
    ("document_name", "string"),
    ("uploader", "string"),
    ("upload_date", "time"),
    ("last_update_date", "time"),
    ("source", "string"),
)
BUILT_IN_ID = "built-in"
NAME_MAX = 255
METADATA_NOT_FOUND = "Metadata not found."


def fields(session: Session, dataset: Dataset) -> list[DatasetMetadata]:
    return list(
        session.scalars(
            select(DatasetMetadata)
            .where(DatasetMetadata.dataset_id == dataset.id)
            .order_by(DatasetMetadata.created_at, DatasetMetadata.id)
        )
    )


def _field(session: Session, dataset: Dataset, metadata_id: str) -> DatasetMetadata:
    try:
        uuid.UUID(metadata_id)
    except ValueError:
        raise NotFound(METADATA_NOT_FOUND) from None
    found = session.get(DatasetMetadata, metadata_id)
    if found is None or found.dataset_id != dataset.id:
        raise NotFound(METADATA_NOT_FOUND)
    return found


def _name(session: Session, dataset: Dataset, value: Any, keep: str | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidParam("name is required.")
    name = value.strip()
    if len(name) > NAME_MAX:
        raise InvalidParam(f"name must be at most {NAME_MAX} characters.")
    if name in dict(BUILT_IN):
        raise InvalidParam(f"name {name!r} is a built-in field's.")
    clash = session.scalar(
        select(DatasetMetadata.id).where(
            DatasetMetadata.dataset_id == dataset.id, DatasetMetadata.name == name
        )
    )
    if clash is not None and clash != keep:
        raise InvalidParam(f"Metadata name {name!r} already exists.")
    return name


def create_field(
    session: Session, dataset: Dataset, account_id: str, body: dict[str, Any]
) -> DatasetMetadata:
    kind = body.get("type")
    if kind not in TYPES:
        raise InvalidParam(f"type must be one of: {', '.join(TYPES)}.")
    field = DatasetMetadata(
        tenant_id=dataset.tenant_id,
        dataset_id=dataset.id,
        type=kind,
        name=_name(session, dataset, body.get("name")),
        created_by=account_id,
    )
    session.add(field)
    session.flush()
    return field


def rename_field(
    session: Session, dataset: Dataset, metadata_id: str, name: Any
) -> DatasetMetadata:
    field = _field(session, dataset, metadata_id)
    new = _name(session, dataset, name, keep=field.id)
    if new != field.name:
        for document in _documents_with(session, dataset, field.name):
            values = dict(document.doc_metadata or {})
            values[new] = values.pop(field.name)
            document.doc_metadata = values
        field.name = new
    session.flush()
    return field


def delete_field(session: Session, dataset: Dataset, metadata_id: str) -> None:
    field = _field(session, dataset, metadata_id)
    for document in _documents_with(session, dataset, field.name):
        document.doc_metadata = {
            k: v for k, v in (document.doc_metadata or {}).items() if k != field.name
        }
    session.delete(field)
    session.flush()


def _documents_with(session: Session, dataset: Dataset, name: str) -> list[Document]:
    return [
        d
        for d in session.scalars(select(Document).where(Document.dataset_id == dataset.id))
        if isinstance(d.doc_metadata, dict) and name in d.doc_metadata
    ]


def listing(session: Session, dataset: Dataset) -> dict[str, Any]:
    """Dify's `GET …/metadata`: each field with the number of documents that have a value."""
    documents = list(session.scalars(select(Document.doc_metadata).where(
        Document.dataset_id == dataset.id)))  # fmt: skip
    return {
        "doc_metadata": [
            {
                "id": f.id,
                "name": f.name,
                "type": f.type,
                "count": sum(1 for d in documents if isinstance(d, dict) and f.name in d),
            }
            for f in fields(session, dataset)
        ],
        "built_in_field_enabled": dataset.built_in_field_enabled,
    }


def built_in_fields() -> dict[str, Any]:
    return {"fields": [{"name": name, "type": kind} for name, kind in BUILT_IN]}


def set_built_in(dataset: Dataset, action: str) -> None:
    if action not in ("enable", "disable"):
        raise NotFound("Not found.")
    dataset.built_in_field_enabled = action == "enable"


def _value(kind: str, value: Any, where: str) -> Any:
    if value is None or value == "":
        return None
    if kind == "string":
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise InvalidParam(f"{where}.value must be a string.")
        return str(value)
    if isinstance(value, bool):
        raise InvalidParam(f"{where}.value must be a number.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidParam(f"{where}.value must be a number.") from None
    if kind == "time":
        return int(number)
    return int(number) if number.is_integer() else number


def update_documents(session: Session, dataset: Dataset, body: dict[str, Any]) -> None:
    """Dify's `POST …/documents/metadata`: each operation sets a document's values (all of
    them, or with `partial_update` only those it names); checked whole before anything is
    written."""
    operations = body.get("operation_data")
    if not isinstance(operations, list) or not operations:
        raise InvalidParam("operation_data is required: a list of {document_id, metadata_list}.")
    by_id = {f.id: f for f in fields(session, dataset)}
    planned: list[tuple[Document, dict[str, Any], bool]] = []
    for index, operation in enumerate(operations):
        at = f"operation_data[{index}]"
        if not isinstance(operation, dict):
            raise InvalidParam(f"{at} must be an object.")
        document_id = operation.get("document_id")
        document = session.get(Document, document_id) if isinstance(document_id, str) else None
        if document is None or document.dataset_id != dataset.id:
            raise NotFound("Document not found.")
        items = operation.get("metadata_list")
        if not isinstance(items, list):
            raise InvalidParam(f"{at}.metadata_list must be a list.")
        values: dict[str, Any] = {}
        for position, item in enumerate(items):
            where = f"{at}.metadata_list[{position}]"
            field = by_id.get(str(item.get("id"))) if isinstance(item, dict) else None
            if field is None:
                raise InvalidParam(f"{where}.id: the dataset has no such metadata field.")
            values[field.name] = _value(field.type, item.get("value"), where)
        planned.append((document, values, bool(operation.get("partial_update", False))))
    for document, values, partial in planned:
        kept = dict(document.doc_metadata or {}) if partial else {}
        kept.update(values)
        document.doc_metadata = {k: v for k, v in kept.items() if v is not None}
    session.flush()


def _built_in_values(document: Document, uploader: str | None) -> dict[str, Any]:
    return {
        "document_name": document.name,
        "uploader": uploader,
        "upload_date": int(document.created_at.timestamp()),
        "last_update_date": int(document.updated_at.timestamp()),
        "source": "file_upload" if document.data_source_type == "upload_file" else None,
    }


def _uploaders(session: Session, documents: Sequence[Document]) -> dict[str, str]:
    ids = {d.created_by for d in documents}
    if not ids:
        return {}
    rows = session.execute(select(Account.id, Account.name).where(Account.id.in_(ids)))
    return {account_id: name for account_id, name in rows.tuples()}


def document_views(
    session: Session, dataset: Dataset, documents: Sequence[Document]
) -> dict[str, list[dict[str, Any]]]:
    """Each document's `doc_metadata` as Dify lists it ({id, name, type, value}), by id."""
    known = fields(session, dataset)
    uploaders = _uploaders(session, documents) if dataset.built_in_field_enabled else {}
    found: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        values = document.doc_metadata if isinstance(document.doc_metadata, dict) else {}
        items = [
            {"id": f.id, "name": f.name, "type": f.type, "value": values[f.name]}
            for f in known
            if f.name in values
        ]
        if dataset.built_in_field_enabled:
            built = _built_in_values(document, uploaders.get(document.created_by))
            items.extend(
                {"id": BUILT_IN_ID, "name": name, "type": kind, "value": built[name]}
                for name, kind in BUILT_IN
            )
        found[document.id] = items
    return found


def filtered_documents(session: Session, dataset: Dataset, conditions: Any) -> set[str] | None:
    """The ids of the dataset's documents a search's `metadata_filtering_conditions` keeps
    (None: no filter)."""
    types = {f.name: f.type for f in fields(session, dataset)}
    if dataset.built_in_field_enabled:
        types.update(dict(BUILT_IN))
    try:
        parsed = parse_filter(conditions, types)
    except FilterError as error:
        raise InvalidParam(str(error)) from None
    if parsed is None:
        return None
    documents = list(session.scalars(select(Document).where(Document.dataset_id == dataset.id)))
    uploaders = _uploaders(session, documents) if dataset.built_in_field_enabled else {}
    kept = set()
    for document in documents:
        values = dict(document.doc_metadata) if isinstance(document.doc_metadata, dict) else {}
        if dataset.built_in_field_enabled:
            values.update(_built_in_values(document, uploaders.get(document.created_by)))
        if parsed.matches(values):
            kept.add(document.id)
    return kept
