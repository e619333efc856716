"""External knowledge bases in the console (Dify's routes): the workspace's connections to
external knowledge services (`/datasets/external-knowledge-api`, Dify's "templates"), an
external dataset bound to one of them (`/datasets/external`), and its hit testing
(`/datasets/{id}/external-hit-testing`). Reading needs a member; writing an editor. The use
cases are `services/datasets/external.py`'s."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from conduit.api.console.apps import int_param
from conduit.api.deps import AppSettings, CurrentIdentity, DbSession
from conduit.api.responses import page_body
from conduit.api.v1 import documents as v1_documents
from conduit.api.v1.schemas import JsonBody
from conduit.db.models import Role
from conduit.errors import InvalidParam
from conduit.services.apps import require_role
from conduit.services.datasets import datasets, external
from conduit.services.datasets.datasets import DatasetFields

router = APIRouter(prefix="/datasets", tags=["console: external knowledge"])
Text = Annotated[str | None, Query()]


def _client(request: Request) -> external.ExternalKnowledge:
    return request.app.state.retriever.external  # type: ignore[no-any-return]


@router.get("/external-knowledge-api")
def list_apis(
    identity: CurrentIdentity, session: DbSession, settings: AppSettings,
    page: Text = None, limit: Text = None, keyword: Text = None,
) -> dict[str, Any]:  # fmt: skip
    member = identity.membership
    page_number = int_param("page", page, default=1, low=1, high=100_000)
    page_size = int_param("limit", limit, default=20, low=1, high=100)
    items, total = external.list_apis(
        session, member.tenant_id, page=page_number, limit=page_size, keyword=keyword or None
    )
    data = external.api_views(session, items, settings.secret_key())
    return page_body(data, page=page_number, limit=page_size, total=total)


@router.post("/external-knowledge-api", status_code=201)
def create_api(
    identity: CurrentIdentity, session: DbSession, settings: AppSettings, request: Request,
    body: JsonBody,
) -> dict[str, Any]:  # fmt: skip
    """A connection `{name, description?, settings: {endpoint, api_key}}`, made once the
    endpoint answered."""
    member = identity.membership
    require_role(member, Role.EDITOR, "connect external knowledge APIs")
    fields = external.ApiFields.parse(body, creating=True)
    assert fields.endpoint and fields.api_key
    session.commit()  # nothing written yet: no transaction waits on the service
    _client(request).probe(fields.endpoint, fields.api_key)
    made = external.create_api(
        session,
        tenant_id=member.tenant_id,
        account_id=member.account_id,
        fields=fields,
        secret=settings.secret_key(),
    )
    return external.api_views(session, [made], settings.secret_key())[0]


@router.get("/external-knowledge-api/{api_id}")
def get_api(
    api_id: str, identity: CurrentIdentity, session: DbSession, settings: AppSettings
) -> dict[str, Any]:
    found = external.get_api(session, identity.membership.tenant_id, api_id)
    return external.api_views(session, [found], settings.secret_key())[0]


@router.patch("/external-knowledge-api/{api_id}")
def update_api(
    api_id: str, identity: CurrentIdentity, session: DbSession, settings: AppSettings,
    request: Request, body: JsonBody,
) -> dict[str, Any]:  # fmt: skip
    member = identity.membership
    require_role(member, Role.EDITOR, "change external knowledge APIs")
    fields = external.ApiFields.parse(body, creating=False)
    found = external.get_api(session, member.tenant_id, api_id)
    key = external.kept_key(found, fields, settings.secret_key())
    if key is not None and fields.endpoint is not None:
        session.commit()  # nothing written yet: no transaction waits on the service
        if fields.endpoint != found.endpoint or not external.is_kept(fields.api_key):
            _client(request).probe(fields.endpoint, key)  # a new endpoint or key
        found = external.get_api(session, member.tenant_id, api_id)
    changed = external.update_api(
        session, found, account_id=member.account_id, fields=fields, key=key,
        secret=settings.secret_key(),
    )  # fmt: skip
    return external.api_views(session, [changed], settings.secret_key())[0]


@router.delete("/external-knowledge-api/{api_id}", status_code=204)
def delete_api(api_id: str, identity: CurrentIdentity, session: DbSession) -> Response:
    """Remove a connection no dataset uses (409 naming those that do)."""
    member = identity.membership
    require_role(member, Role.EDITOR, "delete external knowledge APIs")
    external.delete_api(session, external.get_api(session, member.tenant_id, api_id))
    return Response(status_code=204)


@router.get("/external-knowledge-api/{api_id}/use-check")
def use_check(api_id: str, identity: CurrentIdentity, session: DbSession) -> dict[str, Any]:
    found = external.get_api(session, identity.membership.tenant_id, api_id)
    return external.use_check(session, found)


@router.post("/external", status_code=201)
def create_external_dataset(
    identity: CurrentIdentity, session: DbSession, body: JsonBody
) -> dict[str, Any]:
    """Dify's `{external_knowledge_api_id, external_knowledge_id, name, description?,
    external_retrieval_model?}`: the dataset and its binding, in one transaction."""
    member = identity.membership
    require_role(member, Role.EDITOR, "create datasets")
    dataset = datasets.create_dataset(
        session,
        tenant_id=member.tenant_id,
        account_id=member.account_id,
        fields=DatasetFields.parse({**body, "provider": external.EXTERNAL}, creating=True),
    )
    return datasets.view(session, dataset)


@router.post("/{dataset_id}/external-hit-testing")
def external_hit_testing(
    dataset_id: str, identity: CurrentIdentity, session: DbSession, request: Request,
    body: JsonBody,
) -> dict[str, Any]:  # fmt: skip
    """`{query, external_retrieval_model?}`: the service's records, as Dify shows them."""
    dataset = datasets.get_member_dataset(session, identity.membership, dataset_id)
    if dataset.provider != external.EXTERNAL:
        raise InvalidParam("This dataset is not external: use hit-testing.")
    return v1_documents.hit_testing(session, dataset, request, body)
