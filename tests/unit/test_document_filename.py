"""A document's name is a label: what is left of the uploader's name once it cannot be a path,
break a line, or run on."""

from __future__ import annotations

import pytest

from propylon.rag.filename import document_filename


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\tmp\\x.txt", "x.txt"),
        ("a  b.txt", "a  b.txt"),  # the uploader's spacing is theirs
        ("line\r\nbreak.md", "line break.md"),
        ("tab\there\u2028.md", "tab here .md"),
        ("bad\ud800byte.eml", "bad\ufffdbyte.eml"),
        ("dir/", None),
        ("..", None),
        ("  ", None),
        (None, None),
    ],
)
def test_a_name_keeps_only_its_last_part_without_control_characters(
    given: str | None, stored: str | None
) -> None:
    assert document_filename(given) == stored


def test_a_long_name_is_cut_in_its_stem_keeping_its_extension() -> None:
    name = document_filename("x" * 300 + ".docx")
    assert name == "x" * 250 + ".docx" and len(name) == 255
    assert document_filename("y" * 300) == "y" * 255
    assert document_filename("z" * 300 + "." + "e" * 20) == ("z" * 300 + "." + "e" * 20)[:255]
