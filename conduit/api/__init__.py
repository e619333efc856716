"""HTTP only: routers, auth, request ids, timing, the error envelope."""
