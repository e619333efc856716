"""The console tier (`/console/api`): what the web UI and workspace admins call."""

from fastapi import APIRouter

from conduit.api.console import (
    api_keys,
    app_runs,
    apps,
    auth,
    model_providers,
    sites,
    workspaces,
)

router = APIRouter(prefix="/console/api")
router.include_router(auth.router)
router.include_router(workspaces.router)
router.include_router(apps.router)
router.include_router(sites.router)
router.include_router(api_keys.router)
router.include_router(model_providers.router)
router.include_router(app_runs.router)

__all__ = ["router"]
