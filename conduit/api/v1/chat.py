"""POST /v1/chat-messages, its stop and its resume."""

from conduit.api.v1._runs import run_routes

router = run_routes("chat-messages", "chat", "service: chat")
