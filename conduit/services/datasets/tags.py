"""Dataset tags (Dify's tags of type `knowledge`): a workspace's labels, bound to its datasets,
listed with each dataset and used to filter the dataset list."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from conduit.db.models import Dataset, Tag, TagBinding
from conduit.errors import InvalidParam, NotFound
from conduit.services._like import contains
from conduit.services.datasets.datasets import get_dataset

TAG_TYPE = "knowledge"
NAME_MAX = 50
TAG_NOT_FOUND = "Tag not found."


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidParam("name is required.")
    name = value.strip()
    if len(name) > NAME_MAX:
        raise InvalidParam(f"name must be 1 to {NAME_MAX} characters.")
    return name


def _ids(value: Any, field: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidParam(f"{field} is required: a list of tag ids.")
    return list(dict.fromkeys(value))


def _tags(session: Session, tenant_id: str, tag_ids: list[str]) -> list[Tag]:
    """The workspace's tags of these ids; 404 when any is not one."""
    valid = [i for i in tag_ids if _is_uuid(i)]
    found = (
        list(
            session.scalars(
                select(Tag).where(
                    Tag.tenant_id == tenant_id, Tag.type == TAG_TYPE, Tag.id.in_(valid)
                )
            )
        )
        if valid
        else []
    )
    if len(found) != len(tag_ids):
        raise NotFound(TAG_NOT_FOUND)
    return found


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _check_free(session: Session, tenant_id: str, name: str, keep: str | None = None) -> None:
    clash = session.scalar(
        select(Tag.id).where(Tag.tenant_id == tenant_id, Tag.type == TAG_TYPE, Tag.name == name)
    )
    if clash is not None and clash != keep:
        raise InvalidParam(f"A tag named {name!r} already exists.")


def create_tag(session: Session, tenant_id: str, account_id: str, name: Any) -> Tag:
    checked = _name(name)
    _check_free(session, tenant_id, checked)
    tag = Tag(tenant_id=tenant_id, type=TAG_TYPE, name=checked, created_by=account_id)
    session.add(tag)
    session.flush()
    return tag


def rename_tag(session: Session, tenant_id: str, tag_id: Any, name: Any) -> Tag:
    (tag,) = _tags(session, tenant_id, _ids(tag_id, "tag_id"))
    checked = _name(name)
    _check_free(session, tenant_id, checked, keep=tag.id)
    tag.name = checked
    session.flush()
    return tag


def delete_tag(session: Session, tenant_id: str, tag_id: Any) -> None:
    (tag,) = _tags(session, tenant_id, _ids(tag_id, "tag_id"))
    session.execute(delete(TagBinding).where(TagBinding.tag_id == tag.id))
    session.delete(tag)
    session.flush()


def list_tags(session: Session, tenant_id: str, keyword: str | None = None) -> list[dict[str, Any]]:
    query = (
        select(Tag, func.count(TagBinding.id))
        .outerjoin(TagBinding, TagBinding.tag_id == Tag.id)
        .where(Tag.tenant_id == tenant_id, Tag.type == TAG_TYPE)
        .group_by(Tag.id)
        .order_by(Tag.created_at.desc(), Tag.id)
    )
    if keyword:
        query = query.where(contains(Tag.name, keyword))
    return [tag_view(tag, count) for tag, count in session.execute(query).tuples()]


def tag_view(tag: Tag, bindings: int = 0) -> dict[str, Any]:
    # Dify sends the count as a string.
    return {"id": tag.id, "name": tag.name, "type": tag.type, "binding_count": str(bindings)}


def bind(session: Session, tenant_id: str, account_id: str, tag_ids: Any, target_id: Any) -> None:
    """Put the tags on a dataset the caller can read (those already on it stay once)."""
    tags = _tags(session, tenant_id, _ids(tag_ids, "tag_ids"))
    dataset = _target(session, tenant_id, target_id)
    present = set(
        session.scalars(
            select(TagBinding.tag_id).where(
                TagBinding.target_id == dataset.id, TagBinding.tag_id.in_([t.id for t in tags])
            )
        )
    )
    session.add_all(
        TagBinding(tenant_id=tenant_id, tag_id=t.id, target_id=dataset.id, created_by=account_id)
        for t in tags
        if t.id not in present
    )
    session.flush()


def unbind(session: Session, tenant_id: str, tag_ids: Any, target_id: Any) -> None:
    tags = _tags(session, tenant_id, _ids(tag_ids, "tag_ids"))
    dataset = _target(session, tenant_id, target_id)
    session.execute(
        delete(TagBinding).where(
            TagBinding.target_id == dataset.id, TagBinding.tag_id.in_([t.id for t in tags])
        )
    )


def _target(session: Session, tenant_id: str, target_id: Any) -> Dataset:
    if not isinstance(target_id, str) or not target_id:
        raise InvalidParam("target_id is required: the dataset's id.")
    return get_dataset(session, tenant_id, target_id, api=True)
