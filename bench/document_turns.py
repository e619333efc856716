"""A conversation's document, turn after turn: what reading it for the prompt costs.

    .venv/bin/python bench/document_turns.py             # 7 rounds, medians
    .venv/bin/python bench/document_turns.py --rounds 3

A chat turn remembers its conversation's past files: each turn reads them again for the model
(`FileParts`, what a run's start does on its thread). A document's text is parsed once per
process and then kept by content (`run_files.DOCUMENT_TEXTS`); the upload's row and the
presence of its bytes are checked on every turn. Per round, for each file: the first turn's
read (the text dropped first, so it is parsed: PDF and Word in a child process) and a later
turn's (the text kept). SQLite and a local storage folder in a temporary directory; the files
are made the way a user's tools make them (reportlab, python-docx).
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

from docx import Document
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from conduit.db.migrations import upgrade
from conduit.db.models import App, AppMode, Tenant
from conduit.infra.cache import MemoryCache
from conduit.infra.db import Database, build_engine
from conduit.infra.storage import LocalStorage
from conduit.services import files as uploads
from conduit.services import run_files
from conduit.services.end_users import get_or_create_end_user

LINE = "The committee reviewed the quarterly figures and agreed on the plan for next year. "


def pdf(pages: int) -> bytes:
    buffer = io.BytesIO()
    drawing = canvas.Canvas(buffer, pagesize=A4)
    for page in range(pages):
        for row in range(40):
            drawing.drawString(40, 800 - row * 18, f"{page}.{row} {LINE[:80]}")
        drawing.showPage()
    drawing.save()
    return buffer.getvalue()


def docx(paragraphs: int) -> bytes:
    document = Document()
    for n in range(paragraphs):
        document.add_paragraph(f"{n}. {LINE * 4}")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    folder = Path(tempfile.mkdtemp(prefix="conduit-bench-"))
    url = f"sqlite:///{folder / 'bench.db'}"
    upgrade(url)
    db = Database(build_engine(url, pool_size=2, max_overflow=0))
    storage = LocalStorage(folder / "files")
    with db.transaction() as session:
        tenant = Tenant(name="Bench")
        session.add(tenant)
        session.flush()
        app = App(tenant_id=tenant.id, name="docs", mode=AppMode.CHAT, model_config_={})
        session.add(app)
        session.flush()
        user = get_or_create_end_user(session, app, "bench", MemoryCache())
        made = {
            "report.pdf (30 pages)": ("report.pdf", "application/pdf", pdf(30)),
            "notes.docx (200 paragraphs)": ("notes.docx", "application/octet-stream", docx(200)),
            "guide.md (200 KB)": ("guide.md", "text/markdown", (LINE * 2400).encode()),
        }
        files = {}
        for label, (name, mime, data) in made.items():
            row = uploads.upload(
                session, storage, app=app, end_user=user, filename=name, mime_type=mime,
                data=data, limits=uploads.UploadLimits(),
            )  # fmt: skip
            files[label] = {"type": "document", "transfer_method": "local_file",
                            "upload_file_id": row.id, "filename": name, "at": 0}  # fmt: skip
        tenant_id, app_id = tenant.id, app.id
    reader = run_files.FileParts(db, storage)
    print(f"{rounds} rounds, medians\n")
    print("| file | size KiB | first turn ms (parsed) | later turn ms (kept) | ratio |")
    print("|---|---:|---:|---:|---:|")
    for label, file in files.items():
        first, later = [], []
        for _ in range(rounds):
            run_files.DOCUMENT_TEXTS = run_files.DocumentTexts()
            began = time.perf_counter()
            turn = reader._read(tenant_id, app_id, [file])
            first.append(time.perf_counter() - began)
            began = time.perf_counter()
            assert reader._read(tenant_id, app_id, [file]) == turn
            later.append(time.perf_counter() - began)
        size = len(made[label][2]) // 1024
        a, b = statistics.median(first) * 1000, statistics.median(later) * 1000
        print(f"| {label} | {size} | {a:.1f} | {b:.2f} | {a / b:.0f}× |")
    db.dispose()


if __name__ == "__main__":
    main()
