"""Conduit: an LLM application server that speaks Dify's Service API."""

__version__ = "0.1.0"
