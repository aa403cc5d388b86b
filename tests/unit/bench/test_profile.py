"""The profile summary: where a py-spy sample's time is charged."""

from __future__ import annotations

from bench.profile import summarise


def test_profile_summary_drops_frames_above_the_event_loop_and_groups_by_package() -> None:
    site = "/v/lib/python3.11/site-packages"
    std = "/py/lib/python3.11"
    top = f"<module> (/v/lib/python3.11/runpy.py:1);Runner.run ({std}/asyncio/runners.py:118)"
    raw = "\n".join(
        [
            f"{top} 6",
            f"{top};app ({site}/starlette/routing.py:3);chat_completions "
            "(/w/src/propylon/http/chat.py:20);"
            "_post (/w/src/propylon/gateway/providers/openai.py:9) 3",
            f"{top};app ({site}/starlette/routing.py:3);dumps ({std}/json/__init__.py:2) 1",
        ]
    )
    summary = summarise(raw)
    assert (summary.total, summary.loop_only) == (10, 6)
    assert summary.groups["starlette"] == 4
    assert summary.groups["propylon.gateway.providers"] == 3
    assert summary.groups["json"] == 1
    assert "asyncio" not in summary.groups  # above the loop: on every stack
    assert summary.files["propylon/http/chat.py"] == 3
    assert summary.owners["propylon/gateway/providers/openai.py"] == 3
    assert summary.owners["outside Propylon: json"] == 1
    assert summary.leaves["`_post` (propylon/gateway/providers/openai.py)"] == 3


def test_perf_dso_report_is_read_as_library_shares() -> None:
    from bench.profile import parse_dso_report

    text = "\n".join(
        [
            "# Samples: 12K of event 'cpu-clock:ppp'",
            "#",
            "# Overhead  Shared Object",
            "# ........  ....................",
            "#",
            "    76.06%  libpython3.11.so.1.0",
            "    12.50%  [kernel.kallsyms]",
            "     0.40%  orjson.cpython-311-x86_64-linux-gnu.so",
            "",
            "#",
            "# (Tip: use --sort)",
        ]
    )
    assert parse_dso_report(text) == [
        ("libpython3.11.so.1.0", 76.06),
        ("[kernel.kallsyms]", 12.5),
        ("orjson.cpython-311-x86_64-linux-gnu.so", 0.4),
    ]
