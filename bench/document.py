"""``docs/benchmarks.md``: each family owns the text between its two markers.

Writing a section replaces only what lies between ``<!-- bench:NAME:start -->`` and
``<!-- bench:NAME:end -->``; a section not yet in the file is appended. Everything else in the
file — the preamble, other families' sections, prose written by hand — is kept as it is.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
from collections.abc import Sequence
from pathlib import Path

from bench.suite import Section

PREAMBLE = """\
# Benchmarks

What Propylon costs on the request path, measured on one machine against its own baseline in the
same run: every number through the gateway is paired with the same measurement made straight to
the fake upstream (`propylon fake-upstream`), so the difference is Propylon's. Real processes
talk over loopback (127.0.0.1) only.

Reproduce the whole table from a clean checkout with one command:

```sh
make bench                       # = .venv/bin/propylon bench --output docs/benchmarks.md
.venv/bin/propylon bench --only gateway,cold_start   # some families only
.venv/bin/propylon bench --quick --output /tmp/b.md  # smoke test: seconds, numbers meaningless
python -m bench.gateway                              # one family, printed
```

Each section below says when, where and with which command it was measured. A section is
rewritten only by its own family, so sections may come from different runs.
"""


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def write_sections(path: Path, sections: Sequence[Section]) -> None:
    """Put each section between its markers in ``path`` (created with the preamble if absent)."""
    text = path.read_text(encoding="utf-8") if path.exists() else PREAMBLE
    for section in sections:
        text = replace_section(text, section)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def replace_section(text: str, section: Section) -> str:
    """``text`` with ``section`` between its markers (appended when the markers are absent)."""
    start, end = markers(section.name)
    block = f"{start}\n{section.markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return text.rstrip("\n") + "\n\n" + block + "\n"


def machine() -> str:
    """One line describing the machine: CPU model, cores, memory, OS, Python."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{model}, {os.cpu_count()} cores, {mem_gb:.1f} GB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def stamp(command: str) -> str:
    """The provenance line every section starts with: date, machine, command."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"Measured {now} on {machine()} (load average at the end: {load}), with `{command}`."
