"""Celery app and tasks, one module per queue."""
