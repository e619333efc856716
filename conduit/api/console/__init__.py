"""The console tier (`/console/api`): what the web UI and workspace admins call."""

from fastapi import APIRouter, Depends

from conduit.api.bodies import check_declared_body
from conduit.api.console import (
    annotations,
    api_keys,
    app_logs,
    app_runs,
    apps,
    auth,
    datasets,
    external_knowledge,
    forms,
    model_providers,
    sites,
    tasks,
    tools,
    webhooks,
    workflow_debug,
    workflow_runs,
    workflows,
    workspaces,
)

# Typed bodies are read by FastAPI itself: checked as every JSON body is (415, NUL, 64 bits).
router = APIRouter(prefix="/console/api", dependencies=[Depends(check_declared_body)])
router.include_router(auth.router)
router.include_router(workspaces.router)
router.include_router(apps.router)
router.include_router(sites.router)
router.include_router(api_keys.router)
router.include_router(external_knowledge.router)  # before datasets: not a dataset's id
router.include_router(datasets.router)  # after api_keys: /datasets/api-keys is theirs
router.include_router(model_providers.router)
router.include_router(tools.router)
router.include_router(app_runs.router)
router.include_router(app_logs.router)
router.include_router(annotations.router)
router.include_router(webhooks.router)
router.include_router(tasks.router)
router.include_router(workflows.router)
router.include_router(workflow_debug.router)
router.include_router(workflow_runs.router)
router.include_router(forms.router)

__all__ = ["router"]
