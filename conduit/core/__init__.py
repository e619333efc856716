"""Engines free of HTTP and of the ORM session: the run pipeline, model providers, app runners,
workflows and retrieval. Nothing here imports `api`, `services`, `tasks` or signal handlers."""
