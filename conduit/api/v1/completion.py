"""POST /v1/completion-messages, its stop and its resume."""

from conduit.api.v1._runs import run_routes

router = run_routes("completion-messages", "completion", "service: completion")
