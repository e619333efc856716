"""Infrastructure: settings, database, Redis, cache, outbox, logging, metrics, tracing."""
