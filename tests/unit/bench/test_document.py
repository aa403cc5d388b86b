"""docs/benchmarks.md: each family rewrites only the text between its own markers."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.document import PREAMBLE, write_sections
from bench.load import percentile
from bench.suite import BENCHMARKS, Section, choose


def test_a_new_file_gets_the_preamble_and_the_section(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    write_sections(path, [Section("gateway", "## Gateway\n\nnumbers")])
    text = path.read_text()
    assert text.startswith(PREAMBLE)
    assert "<!-- bench:gateway:start -->\n## Gateway\n\nnumbers\n<!-- bench:gateway:end -->" in text


def test_rewriting_a_section_keeps_everything_around_it(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text(
        "# Mine\n\n<!-- bench:gateway:start -->\nold\n<!-- bench:gateway:end -->\n\n"
        "between\n\n<!-- bench:ingestion:start -->\ntheirs\n<!-- bench:ingestion:end -->\n"
    )
    write_sections(path, [Section("gateway", "new $1 \\1 numbers")])
    assert path.read_text() == (
        "# Mine\n\n<!-- bench:gateway:start -->\nnew $1 \\1 numbers\n<!-- bench:gateway:end -->"
        "\n\nbetween\n\n<!-- bench:ingestion:start -->\ntheirs\n<!-- bench:ingestion:end -->\n"
    )


def test_choosing_families_by_name_in_table_order_or_refusing_unknown_ones() -> None:
    assert [b.name for b in choose(None)] == [b.name for b in BENCHMARKS.values() if b.default]
    assert [b.name for b in choose(["cold_start", "gateway"])] == ["cold_start", "gateway"]
    with pytest.raises(ValueError, match="unknown benchmark"):
        choose(["gateway", "nonsense"])


def test_a_family_whose_module_is_not_written_yet_loads_as_none() -> None:
    missing = BENCHMARKS["gateway"].__class__("later", "bench.not_written_yet", "-")
    assert missing.load() is None
    assert BENCHMARKS["gateway"].load() is not None


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
