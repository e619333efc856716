"""Use cases, one module per resource. Verbs take an explicit session and never commit."""
