"""File bytes to text (`conduit/core/rag/extract.py`). Every file is made here the way a user's
tools make it (reportlab for PDF, python-docx for Word); PDF, Word and HTML go through the child
process, as in production."""

from __future__ import annotations

import io
import zipfile

import pytest
from docx import Document
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from conduit.core.rag.errors import FatalIndexingError
from conduit.core.rag.extract import ExtractLimits, extract, is_supported


def pdf_of(*pages: str) -> bytes:
    buffer = io.BytesIO()
    drawing = canvas.Canvas(buffer, pagesize=A4)
    for text in pages:
        if text:
            drawing.drawString(72, 720, text)
        else:
            drawing.rect(72, 600, 200, 100, fill=1)  # a picture, no text layer
        drawing.showPage()
    drawing.save()
    return buffer.getvalue()


def encrypted(pdf: bytes, password: str) -> bytes:
    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(pdf)).pages:
        writer.add_page(page)
    writer.encrypt(user_password=password, owner_password="owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_of(paragraphs: list[str], table: list[list[str]] | None = None, after: str = "") -> bytes:
    document = Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    if after:
        document.add_paragraph(after)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


class TestSupported:
    @pytest.mark.parametrize(
        "name", ["a.txt", "B.MD", "c.markdown", "d.mdx", "e.html", "f.htm", "g.pdf", "h.docx"]
    )
    def test_the_documented_types_are_supported(self, name: str) -> None:
        assert is_supported(name)

    @pytest.mark.parametrize("name", ["a.doc", "b.xlsx", "c.png", "noextension", "d.pdf.exe"])
    def test_others_are_not(self, name: str) -> None:
        assert not is_supported(name)

    def test_an_unsupported_file_names_itself_and_the_supported_types(self) -> None:
        with pytest.raises(FatalIndexingError) as raised:
            extract("budget.xlsx", b"PK...")
        assert "'budget.xlsx'" in raised.value.message
        assert ".xlsx files are not supported" in raised.value.message
        assert "pdf" in raised.value.message


class TestText:
    def test_utf8_with_a_bom(self) -> None:
        assert extract("a.txt", "\ufeffcafé crème".encode()).text == "café crème"

    @pytest.mark.parametrize(
        ("text", "encoding"),
        [
            ("Съешь же ещё этих мягких французских булок, да выпей чаю. " * 8, "cp1251"),
            (
                "Il était une fois, dans un petit village de Provence, un boulanger qui se levait "
                "chaque matin avant l'aube. Sa boulangerie était réputée dans toute la région "
                "pour ses croissants dorés et son pain de campagne. Les habitants venaient de "
                "loin pour goûter à ses pâtisseries, et l'été, les touristes faisaient la queue "
                "jusqu'à la fontaine de la place.",
                "cp1252",
            ),
        ],
    )
    def test_a_legacy_encoding_is_detected(self, text: str, encoding: str) -> None:
        assert extract("legacy.txt", text.encode(encoding)).text == text

    def test_binary_data_is_refused(self) -> None:
        with pytest.raises(FatalIndexingError, match=r"holds binary data"):
            extract("photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200))

    def test_an_empty_file_says_so(self) -> None:
        with pytest.raises(FatalIndexingError, match=r"'empty.txt': it is empty"):
            extract("empty.txt", b"  \n\n ")

    def test_markdown_is_kept_as_written_and_marked_for_its_splitter(self) -> None:
        found = extract("guide.md", b"# Title\n\nSome *text*.\n\n```\ncode\n```\n")
        assert found.markdown
        assert found.text.startswith("# Title")
        assert not extract("a.txt", b"x").markdown


class TestCsv:
    def test_rows_become_header_value_lines(self) -> None:
        data = b"name,role,city\nAda,engineer,London\nGrace,admiral,\n"
        assert extract("people.csv", data).text == (
            "name: Ada; role: engineer; city: London\nname: Grace; role: admiral"
        )

    def test_the_delimiter_is_sniffed(self) -> None:
        data = b"name;age\nAda;36\nAlan;41\n"
        assert extract("p.csv", data).text == "name: Ada; age: 36\nname: Alan; age: 41"


class TestHtml:
    def test_scripts_styles_and_head_are_dropped(self) -> None:
        page = (
            b"<html><head><title>T</title><style>p{color:red}</style></head><body>"
            b"<h1>Heading</h1><script>alert(1)</script><p>First <b>para</b>.</p>"
            b"<noscript>enable js</noscript><p>Second.</p></body></html>"
        )
        assert extract("page.html", page).text == "Heading\nFirst\npara\n.\nSecond."

    def test_a_fragment_that_looks_like_a_url_is_text(self) -> None:
        assert extract("a.htm", b"https://example.com/x").text == "https://example.com/x"


class TestPdf:
    def test_text_per_page(self) -> None:
        found = extract("report.pdf", pdf_of("First page text", "Second page text"))
        assert found.pages == 2
        assert found.text == "First page text\n\nSecond page text"

    def test_an_encrypted_file_with_an_empty_password_is_read(self) -> None:
        assert extract("a.pdf", encrypted(pdf_of("Open secret"), "")).text == "Open secret"

    def test_a_password_protected_file_is_refused(self) -> None:
        with pytest.raises(FatalIndexingError, match=r"'locked.pdf' is password-protected"):
            extract("locked.pdf", encrypted(pdf_of("Closed"), "s3cret"))

    def test_a_scan_without_a_text_layer_names_ocr(self) -> None:
        with pytest.raises(FatalIndexingError, match=r"no text layer .*OCR"):
            extract("scan.pdf", pdf_of("", ""))

    def test_a_damaged_file_is_refused(self) -> None:
        with pytest.raises(FatalIndexingError, match=r"'broken.pdf' could not be"):
            extract("broken.pdf", b"%PDF-1.4\n1 0 obj garbage")

    def test_a_file_over_the_memory_limit_is_given_up(self) -> None:
        with pytest.raises(FatalIndexingError, match=r"needs more than 40 MB"):
            extract("big.pdf", pdf_of("x"), ExtractLimits(memory_mb=40))

    def test_a_parse_over_the_time_limit_is_given_up(self) -> None:
        with pytest.raises(FatalIndexingError, match=r"took longer than 0.05 s"):
            extract("slow.pdf", pdf_of("x"), ExtractLimits(timeout=0.05))


class TestDocx:
    def test_paragraphs_and_tables_in_body_order(self) -> None:
        data = docx_of(
            ["Intro paragraph.", "Second paragraph."],
            table=[["Name", "Role"], ["Ada", "Engineer"]],
            after="After the table.",
        )
        assert extract("doc.docx", data).text == (
            "Intro paragraph.\nSecond paragraph.\nName | Role\nAda | Engineer\nAfter the table."
        )

    def test_an_old_doc_renamed_is_refused(self) -> None:
        with pytest.raises(FatalIndexingError, match=r"old .doc file renamed"):
            extract("old.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512))

    def test_a_zip_bomb_is_refused_before_it_is_unpacked(self) -> None:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("[Content_Types].xml", "<Types/>")
            with archive.open("word/padding.bin", "w", force_zip64=True) as member:
                block = bytes(1024 * 1024)
                for _ in range(201):
                    member.write(block)
        with pytest.raises(FatalIndexingError, match=r"unpacks to 201 MB"):
            extract("bomb.docx", out.getvalue())
