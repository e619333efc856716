"""File storage behind one small interface; the local folder backend for now."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from conduit.infra.settings import Settings


class Storage(Protocol):
    def save(self, key: str, data: bytes) -> None:
        """Store `data` under `key` (atomically: a reader never sees half a file)."""

    def load(self, key: str) -> bytes:
        """The bytes under `key`; FileNotFoundError when there are none."""

    def delete(self, key: str) -> None:
        """Forget `key` (no error when it is absent)."""

    def exists(self, key: str) -> bool:
        """Whether there are bytes under `key`."""


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self._root / key).resolve()
        if self._root not in path.parents:
            raise ValueError(f"storage key escapes the storage folder: {key!r}")
        return path

    def save(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".part")
        partial.write_bytes(data)
        os.replace(partial, path)

    def load(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()


def local_storage(settings: Settings) -> LocalStorage:
    """The files folder of the data dir: a server's uploads, and what its workers read (in the
    distributed mode the folder must be shared with the workers)."""
    return LocalStorage(settings.data.dir / "files")
