"""`propylon ingest`: walks folders, uploads over HTTP, follows the jobs, skips what is in."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from propylon.rag.ingest_client import IngestClient, find_files
from tests.support import documents
from tests.support.servers import AppServer


def make_folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "report.pdf").write_bytes(documents.pdf([["Owls hunt at night."], ["Bats too."]]))
    (root / "sub" / "table.docx").write_bytes(documents.docx_with_table())
    (root / "notes.md").write_text("# Notes\n\nSome notes.\n")
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 junk")
    (root / "picture.gif").write_bytes(b"GIF89a not ingested")
    (root / ".hidden.txt").write_text("skipped")
    (root / "LICENSE").write_text("Permission is granted to read these notes.\n")
    (root / "scan").write_bytes(documents.pdf([["A PDF without an extension."]]))
    (root / "archive").write_bytes(b"\x1f\x8b\x08 gzip, no extension")
    return root


def test_folders_are_walked_for_readable_files(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "docs")
    found = find_files([root])
    assert [external_id for _, external_id in found.files] == [
        "LICENSE",
        "broken.pdf",
        "notes.md",
        "report.pdf",
        "scan",
        "sub/table.docx",
    ]
    # Files without an extension are judged by content; the rest left out are named, with why.
    assert found.unsupported == {
        "archive": "The file is a gzip archive, which cannot be ingested.",
        "picture.gif": "`.gif` is not a document format Propylon reads",
    }


def test_a_link_to_a_file_outside_the_folder_is_left_out_and_named(tmp_path: Path) -> None:
    """`propylon ingest DIR` uploaded what a link in DIR pointed at (/etc/passwd); a folder
    source, whose walk this is too, skipped it on its own."""
    outside = tmp_path / "private.md"
    outside.write_text("# Private\n\nNot the folder's.\n")
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "notes.md").write_text("# Notes\n\nThe folder's own.\n")
    (root / "escape.md").symlink_to(outside)
    (root / "sub" / "inside.md").symlink_to(root / "notes.md")  # a link within: kept
    found = find_files([root])
    assert [external_id for _, external_id in found.files] == ["notes.md", "sub/inside.md"]
    assert found.unsupported == {"escape.md": "a link to a file outside the folder"}


async def test_ingest_reports_each_file_and_skips_them_the_second_time(
    server: AppServer,
    tmp_path: Path,
) -> None:
    root = make_folder(tmp_path / "docs")
    output = io.StringIO()
    client = IngestClient(server.url, server.api_key, Console(file=output, width=120))

    first = await client.run([root], "library")
    assert (first.succeeded, first.skipped) == (5, 0)
    assert sorted(first.unsupported) == ["archive", "picture.gif"]
    assert list(first.failed) == ["broken.pdf"]
    assert "damaged" in first.failed["broken.pdf"]
    assert "sub/table.docx" in output.getvalue()

    (root / "broken.pdf").unlink()
    second = await client.run([root], "library")
    assert (second.uploaded, second.skipped, second.failed) == (0, 5, {})

    (root / "notes.md").write_text("# Notes\n\nChanged notes.\n")
    third = await client.run([root], "library")
    assert (third.succeeded, third.skipped) == (1, 4)
