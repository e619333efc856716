"""Why a document could not be indexed, split by what to do about it.

    IndexingError                (its message is what a person reads on the document)
    ├── FatalIndexingError       the file itself is the problem: retrying cannot help
    └── RetryableIndexingError   something outside the file failed: try again later

Neither is an HTTP error: they end up in a document's `error` field, so their messages name the
file and say what would fix it.
"""

from __future__ import annotations

from typing import ClassVar


class IndexingError(Exception):
    retryable: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FatalIndexingError(IndexingError):
    retryable = False


class RetryableIndexingError(IndexingError):
    retryable = True
