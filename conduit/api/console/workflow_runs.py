"""A workflow or chatflow app's run history in the console: its runs (newest first, scrolled
by `last_id`), one run, and the run's node executions. Editors and above, in the app's
workspace (another workspace's app or run is a 404)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from conduit.api.console.apps import int_param
from conduit.api.deps import CurrentIdentity, DbSession
from conduit.services import workflow_logs

router = APIRouter(prefix="/apps", tags=["console: workflow runs"])


@router.get("/{app_id}/workflow-runs")
def list_workflow_runs(
    app_id: str,
    identity: CurrentIdentity,
    session: DbSession,
    last_id: Annotated[str | None, Query(description="The last run of the previous page.")] = None,
    limit: Annotated[str | None, Query(description="Runs per page, 1–100.")] = None,
) -> dict[str, Any]:
    page_size = int_param("limit", limit, default=20, low=1, high=100)
    rows, has_more = workflow_logs.list_runs(
        session,
        member=identity.membership,
        app_id=app_id,
        last_id=last_id or None,
        limit=page_size,
    )
    return {
        "limit": page_size,
        "has_more": has_more,
        "data": [workflow_logs.run_list_item(row) for row in rows],
    }


@router.get("/{app_id}/workflow-runs/{run_id}")
def get_workflow_run(
    app_id: str, run_id: str, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    row = workflow_logs.get_run(session, member=identity.membership, app_id=app_id, run_id=run_id)
    return workflow_logs.run_detail(row)


@router.get("/{app_id}/workflow-runs/{run_id}/node-executions")
def list_node_executions(
    app_id: str, run_id: str, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    """The run's node executions in the order they started."""
    row, executions = workflow_logs.node_executions(
        session, member=identity.membership, app_id=app_id, run_id=run_id
    )
    return {"data": [workflow_logs.node_execution_view(e, row) for e in executions]}
