"""A file's bytes to plain text, with well-kept parsers (pypdf, python-docx, BeautifulSoup on
lxml, charset-normalizer, the stdlib's csv), never hand-written ones.

PDF, Word and HTML are parsed in a child process (`_extract_worker`) under a wall-clock timeout
and an address-space limit: pypdf is pure Python and would hold the GIL of the process that
serves requests, and a pathological file must end as a clear error on its document, never as a
killed worker. (A child process, not `multiprocessing`: Celery's prefork children are daemonic
and may not have children of their own.) Text, Markdown and CSV are parsed in process.

Every failure is a `FatalIndexingError` whose message names the file and says why: retrying the
same bytes cannot succeed.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import orjson

from conduit.core.rag.errors import FatalIndexingError

TEXT_EXTENSIONS = frozenset({"txt", "text"})
MARKDOWN_EXTENSIONS = frozenset({"md", "markdown", "mdx"})
HTML_EXTENSIONS = frozenset({"html", "htm"})
EXTENSIONS = TEXT_EXTENSIONS | MARKDOWN_EXTENSIONS | HTML_EXTENSIONS | {"pdf", "docx", "csv"}
_IN_CHILD = HTML_EXTENSIONS | {"pdf", "docx"}
_DOCX_MAX_UNCOMPRESSED = 200 * 1024 * 1024
_CSV_SAMPLE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Extracted:
    text: str
    # Split as Markdown (headings and blocks kept whole where they fit).
    markdown: bool = False
    pages: int | None = None


@dataclass(frozen=True, slots=True)
class ExtractLimits:
    timeout: float = 240.0
    memory_mb: int = 1536


def extension_of(filename: str) -> str:
    return PurePath(filename).suffix.lower().lstrip(".")


def is_supported(filename: str) -> bool:
    return extension_of(filename) in EXTENSIONS


def extract(filename: str, data: bytes, limits: ExtractLimits | None = None) -> Extracted:
    """The text of `filename` (its extension chooses the parser); never empty."""
    extension = extension_of(filename)
    if extension not in EXTENSIONS:
        supported = ", ".join(sorted(EXTENSIONS))
        raise FatalIndexingError(
            f"'{filename}' cannot be indexed: .{extension or '(no extension)'} files are not "
            f"supported (supported: {supported})."
        )
    if extension in _IN_CHILD:
        text, pages = _parse_in_child(filename, extension, data, limits or ExtractLimits())
    else:
        text, pages = parse(filename, extension, data)
    if not text.strip():
        raise FatalIndexingError(_no_text(filename, extension))
    return Extracted(text=text, markdown=extension in MARKDOWN_EXTENSIONS, pages=pages)


def parse(filename: str, extension: str, data: bytes) -> tuple[str, int | None]:
    """(text, pages) of `data`, in this process. The child process calls this too."""
    if extension in TEXT_EXTENSIONS or extension in MARKDOWN_EXTENSIONS:
        return decode_text(filename, data), None
    if extension == "csv":
        return _csv_text(decode_text(filename, data)), None
    if extension in HTML_EXTENSIONS:
        return _html_text(data), None
    if extension == "pdf":
        return _pdf_text(filename, data)
    if extension == "docx":
        return _docx_text(filename, data), None
    raise FatalIndexingError(f"'{filename}' cannot be indexed: no parser for .{extension}.")


def decode_text(filename: str, data: bytes) -> str:
    """UTF-8 (with or without a BOM), else the encoding charset-normalizer finds."""
    if b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FatalIndexingError(
            f"'{filename}' is not a text file: it holds binary data. Upload the original "
            "document (PDF, Word, HTML, Markdown, CSV or plain text)."
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise FatalIndexingError(
            f"'{filename}' could not be read as text: its character encoding was not "
            "recognised. Save it as UTF-8 and upload it again."
        )
    return str(best)


def _no_text(filename: str, extension: str) -> str:
    if extension == "pdf":
        return (
            f"No text could be extracted from '{filename}': it has no text layer (scanned "
            "pages need OCR, which this server does not do)."
        )
    return f"No text could be extracted from '{filename}': it is empty."


def _csv_text(text: str) -> str:
    """One line per row, `header: value` pairs joined by `; ` (the header row names them)."""
    sample = text[:_CSV_SAMPLE]
    dialect: Any
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = [row for row in csv.reader(io.StringIO(text), dialect) if any(c.strip() for c in row)]
    if not rows:
        return ""
    header = [name.strip() or f"column {i + 1}" for i, name in enumerate(rows[0])]
    lines = []
    for row in rows[1:]:
        pairs = [
            f"{header[i] if i < len(header) else f'column {i + 1}'}: {value.strip()}"
            for i, value in enumerate(row)
            if value.strip()
        ]
        lines.append("; ".join(pairs))
    return "\n".join(lines) if lines else "; ".join(header)


def _html_text(data: bytes) -> str:
    import warnings

    from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(data, "lxml")
    for tag in soup(["script", "style", "noscript", "template", "head"]):
        tag.decompose()
    lines = (line.strip() for line in soup.get_text("\n").splitlines())
    return "\n".join(line for line in lines if line)


def _pdf_text(filename: str, data: bytes) -> tuple[str, int]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise FatalIndexingError(
                f"'{filename}' is password-protected: remove the password and upload it again."
            )
        pages = [page.extract_text() or "" for page in reader.pages]
    except FatalIndexingError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise FatalIndexingError(
            f"'{filename}' could not be read as a PDF ({type(exc).__name__}: {exc}). "
            "It may be damaged: export it again and upload the new file."
        ) from exc
    return "\n\n".join(page.strip() for page in pages if page.strip()), len(pages)


def _docx_text(filename: str, data: bytes) -> str:
    from docx import Document
    from docx.table import Table

    damaged = (
        f"'{filename}' could not be read as a Word (.docx) document: it may be damaged, or be "
        "an old .doc file renamed. Save it as .docx and upload it again."
    )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise FatalIndexingError(damaged) from exc
    if unpacked > _DOCX_MAX_UNCOMPRESSED:
        raise FatalIndexingError(
            f"'{filename}' unpacks to {unpacked // (1024 * 1024)} MB, over the "
            f"{_DOCX_MAX_UNCOMPRESSED // (1024 * 1024)} MB a Word document may unpack to."
        )
    try:
        document = Document(io.BytesIO(data))
    except (KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise FatalIndexingError(damaged) from exc
    blocks: list[str] = []
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                cells = [cell.text.strip() for cell in row.cells]
                if any(cells):
                    blocks.append(" | ".join(cells))
        elif block.text.strip():
            blocks.append(block.text.strip())
    return "\n".join(blocks)


def _parse_in_child(
    filename: str, extension: str, data: bytes, limits: ExtractLimits
) -> tuple[str, int | None]:
    command = [
        sys.executable,
        "-m",
        "conduit.core.rag._extract_worker",
        extension,
        filename,
        str(limits.memory_mb),
    ]
    try:
        done = subprocess.run(command, input=data, capture_output=True, timeout=limits.timeout)
    except subprocess.TimeoutExpired as exc:
        raise FatalIndexingError(
            f"'{filename}' took longer than {limits.timeout:g} s to parse and was given up."
        ) from exc
    if done.returncode != 0 or not done.stdout:
        ran_out = b"MemoryError" in done.stderr or done.returncode < 0
        if ran_out:
            raise FatalIndexingError(
                f"'{filename}' needs more than {limits.memory_mb} MB to parse and was given up."
            )
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise FatalIndexingError(f"'{filename}' could not be parsed: {tail[0]}")
    answer = orjson.loads(done.stdout)
    if "error" in answer:
        raise FatalIndexingError(str(answer["error"]))
    return str(answer["text"]), answer.get("pages")
