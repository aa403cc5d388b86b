"""``propylon local …``: commands about the local models shipped in the package."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Annotated

import typer

local_app = typer.Typer(no_args_is_help=True, help="The local models shipped with Propylon.")


@local_app.command("build-static")
def build_static(
    output: Annotated[
        Path | None,
        typer.Option(
            help="Directory to write the table and its checksum (default: shipped).",
            file_okay=False,
        ),
    ] = None,
    dims: Annotated[int, typer.Option(help="PCA components kept.")] = 256,
    threads: Annotated[int, typer.Option(help="CPU threads of MiniLM.")] = 1,
) -> None:
    """Distil the static embedding table from the shipped MiniLM (about a minute)."""
    from propylon.local.minilm import MiniLMEmbedder
    from propylon.local.static import ASSET
    from propylon.local.static_build import build

    target = output or Path(str(files("propylon.local") / "assets"))
    target.mkdir(parents=True, exist_ok=True)
    embedder = MiniLMEmbedder.load(threads=threads)
    try:
        vocab_size = embedder.vocab_size
        table = build(embedder, vocab_size, dims)
    finally:
        embedder.close()
    digest = table.write(target)
    typer.echo(f"wrote {target / ASSET} ({vocab_size} pieces x {dims}); sha256 {digest}")
