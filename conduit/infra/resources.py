"""`Resources`: the bottom layer's stateful objects of one process (settings, database, cache),
built by `conduit/bootstrap.py` and passed in; nothing looks them up globally."""

from __future__ import annotations

from dataclasses import dataclass

from conduit.infra.cache import Cache
from conduit.infra.db import Database
from conduit.infra.settings import Settings


@dataclass
class Resources:
    settings: Settings
    db: Database
    cache: Cache
