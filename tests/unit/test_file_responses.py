"""What a file response lets a browser do: passive files inline, anything else a download,
with a Content-Disposition no file name can break out of."""

from __future__ import annotations

import pytest

from conduit.api.files import FILE_HEADERS, content_disposition, file_response
from conduit.db.models import UploadFile
from conduit.services.files import is_passive


def upload_file(name: str, mime_type: str | None) -> UploadFile:
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return UploadFile(name=name, extension=extension, mime_type=mime_type)


@pytest.mark.parametrize(
    ("name", "mime_type"),
    [
        ("dot.png", "image/png"),
        ("photo.JPG", "image/jpeg"),
        ("report.pdf", "application/pdf"),
        ("notes.txt", "text/plain; charset=utf-8"),
        ("song.mp3", "audio/mpeg"),
        ("clip.mp4", "video/mp4"),
    ],
)
def test_passive_files(name: str, mime_type: str) -> None:
    assert is_passive(upload_file(name, mime_type))


@pytest.mark.parametrize(
    ("name", "mime_type"),
    [
        ("page.html", "text/html"),
        ("page.htm", "text/plain"),  # the extension alone makes it active
        ("page.html", "image/png"),
        ("logo.svg", "image/svg+xml"),
        ("logo.png", "image/svg+xml"),  # the type alone makes it active
        ("feed.xml", "application/xml"),
        ("page.xhtml", "application/xhtml+xml"),
        ("app.js", "text/javascript"),
        ("data.json", "application/json"),
        ("archive.zip", "application/zip"),
        ("dot", "image/png"),  # no extension
        ("clip.html", "video/mp4"),
        ("dot.png", None),
    ],
)
def test_active_or_unknown_files(name: str, mime_type: str | None) -> None:
    assert not is_passive(upload_file(name, mime_type))


class TestContentDisposition:
    def test_a_plain_name_is_quoted_as_is(self) -> None:
        assert content_disposition("inline", "dot.png") == 'inline; filename="dot.png"'

    def test_a_unicode_name_has_an_ascii_fallback_and_the_exact_name(self) -> None:
        assert content_disposition("attachment", "résumé 2024.pdf") == (
            "attachment; filename=\"r_sum_ 2024.pdf\"; filename*=utf-8''r%C3%A9sum%C3%A9%202024.pdf"
        )

    @pytest.mark.parametrize(
        "name",
        ['a".html', "a\r\nSet-Cookie: x=1.txt", "a\\b;c=d.txt", "a%22.txt", "a\x00b.txt"],
    )
    def test_no_name_breaks_out_of_the_header(self, name: str) -> None:
        header = content_disposition("attachment", name)
        assert not any(c in header for c in "\r\n\x00")
        assert header.count('"') == 2 and header.count(";") == 2
        quoted = header.split('filename="', 1)[1].split('"', 1)[0]
        assert "\\" not in quoted and "%" not in quoted


class TestFileResponse:
    def test_html_is_a_download_of_bytes(self) -> None:
        response = file_response(
            upload_file("x.html", "text/html"), b"<script>", as_attachment=False
        )
        assert response.media_type == "application/octet-stream"
        assert response.headers["content-disposition"] == 'attachment; filename="x.html"'
        for name, value in FILE_HEADERS.items():
            assert response.headers[name] == value

    def test_an_image_is_inline_unless_asked_as_attachment(self) -> None:
        row = upload_file("dot.png", "image/png")
        inline = file_response(row, b"png", as_attachment=False)
        assert inline.headers["content-type"] == "image/png"
        assert inline.headers["content-disposition"].startswith("inline;")
        download = file_response(row, b"png", as_attachment=True)
        assert download.headers["content-type"] == "image/png"
        assert download.headers["content-disposition"].startswith("attachment;")
        assert download.headers["x-content-type-options"] == "nosniff"
