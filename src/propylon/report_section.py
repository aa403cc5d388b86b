"""One generated section of a Markdown report (docs/benchmarks.md), between its markers."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, section: str, name: str) -> None:
    """Put ``section`` between the markers ``<!-- bench:NAME:start/end -->`` in ``path`` (the
    convention of ``bench/document.py``), appended when absent; the rest is left alone."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    replace_between(path, section, start, end)


def replace_between(path: Path, section: str, start: str, end: str) -> None:
    """Put ``section`` between the lines ``start`` and ``end`` of ``path``, appended when they
    are absent; the rest of the file (other sections, hand-written prose) is kept."""
    block = f"{start}\n{section.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    begin, finish = text.find(start), text.find(end)
    if begin >= 0 and finish > begin:
        text = text[:begin] + block + text[finish + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")
