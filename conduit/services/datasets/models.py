"""The embedding models a dataset can use: the local MiniLM model (provider `conduit`) until
workspaces configure embedding endpoints of their own."""

from __future__ import annotations

from conduit.core.rag.embed.local import MODEL_ID as LOCAL_MODEL_ID

LOCAL_PROVIDER = "conduit"

__all__ = ["LOCAL_MODEL_ID", "LOCAL_PROVIDER"]
