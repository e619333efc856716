"""`python -m conduit.core.rag._extract_worker EXT FILENAME MEMORY_MB`: parse the file on stdin
and print `{"text", "pages"}` or `{"error"}` as JSON. Run by `extract` as a child process with
its own address-space limit, so a pathological file fails alone."""

from __future__ import annotations

import logging
import resource
import sys
import warnings

import orjson

from conduit.core.rag.errors import FatalIndexingError
from conduit.core.rag.extract import parse


def main(argv: list[str]) -> int:
    extension, filename, memory_mb = argv[0], argv[1], int(argv[2])
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)  # pypdf reports recoverable damage through logging
    data = sys.stdin.buffer.read()
    try:
        text, pages = parse(filename, extension, data)
        answer = {"text": text, "pages": pages}
    except FatalIndexingError as exc:
        answer = {"error": exc.message}
    except MemoryError:
        sys.stderr.write("MemoryError\n")
        return 3
    sys.stdout.buffer.write(orjson.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
