"""`propylon`: the one command-line entry point. Sync at this edge, async inside."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from propylon import __version__, cli_edge
from propylon.access.commands import keys_app, tenants_app
from propylon.errors import PropylonError
from propylon.local.commands import local_app
from propylon.settings import Settings

if TYPE_CHECKING:
    from propylon.local.minilm import MiniLMEmbedder

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (or PROPYLON_CONFIG).", dir_okay=False),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Directory for the embedded database (PROPYLON_DATA_DIR)."),
]


def _one_blas_thread() -> None:
    """Requests are a server's parallelism: numpy's BLAS (OpenBLAS) runs on the calling
    thread. Its own threads would spin against the event loop for the semantic cache's
    first-stage search (a product of a few thousand rows: 4,600 x 256 in 72 µs on one thread,
    docs/operations.md). Read by OpenBLAS when numpy is imported, so set before that (nothing
    ``serve`` imports first loads numpy); the operator's value wins. ``worker`` keeps
    OpenBLAS's default: a job's batches are its parallelism."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@app.command()
def serve(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Bind port.")] = None,
    with_worker: Annotated[
        bool | None,
        typer.Option(
            "--with-worker/--no-worker",
            help="Also run background jobs in this process (default: on with the embedded "
            "database, off with DATABASE_URL).",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes sharing the port. Rate limits stay exact across them only "
            "with REDIS_URL (otherwise each process counts alone).",
        ),
    ] = 1,
) -> None:
    """Serve the HTTP API (OpenAI-compatible gateway and the rest)."""
    _one_blas_thread()
    settings = cli_edge.settings(config, data_dir=data_dir, host=host, port=port)
    if settings.database_url is None and workers == 1:
        from propylon.db.embedded import start_early

        start_early(settings.data_dir)  # PostgreSQL starts while the app is imported

    import uvicorn

    from propylon.app import create_app
    from propylon.observe.logging import configure_logging

    if with_worker is not None:
        settings.jobs.in_process_worker = with_worker
    configure_logging(settings.log_level)
    if workers > 1:
        _serve_processes(settings, config, with_worker, workers)
        return
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, settle=True),
            host=settings.host,
            port=settings.port,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=10,
        )
    )
    server.run()


def _serve_processes(
    settings: Settings, config: Path | None, with_worker: bool | None, workers: int
) -> None:
    """Several server processes on one port: each rebuilds these settings from the
    environment (app factory), shares the database and, with REDIS_URL, the limits."""
    import logging
    import os

    import uvicorn

    overrides = {
        "PROPYLON_CONFIG": str(config.resolve()) if config is not None else None,
        "PROPYLON_DATA_DIR": str(settings.data_dir.resolve()),
        "PROPYLON_HOST": settings.host,
        "PROPYLON_PORT": str(settings.port),
        "PROPYLON_JOBS__IN_PROCESS_WORKER": (
            None if with_worker is None else str(with_worker).lower()
        ),
    }
    os.environ.update({name: value for name, value in overrides.items() if value is not None})
    if settings.redis_url is None:
        logging.getLogger(__name__).warning(
            "--workers without REDIS_URL: rate limits are counted per process, not shared"
        )
    uvicorn.run(
        "propylon.app:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


@app.command()
def worker(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Run background jobs until SIGTERM (running jobs get `jobs.shutdown_grace_s` to finish)."""
    from propylon.app import run_worker
    from propylon.observe.logging import configure_logging

    settings = cli_edge.settings(config, data_dir=data_dir)
    configure_logging(settings.log_level)
    asyncio.run(run_worker(settings))


@app.command()
def migrate(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Apply pending database migrations."""
    from propylon.db.connect import open_database
    from propylon.db.migrator import migrate as apply

    settings = cli_edge.settings(config, data_dir=data_dir)

    async def _run() -> list[str]:
        async with open_database(settings) as database:
            return [f"{m.version:04d}_{m.name}" for m in await apply(database)]

    applied = asyncio.run(_run())
    typer.echo("applied: " + ", ".join(applied) if applied else "database is up to date")


@app.command("fake-upstream")
def fake_upstream(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Bind port.")] = 8089,
    latency_ms: Annotated[float, typer.Option(help="Delay before response headers.")] = 0.0,
    ttft_ms: Annotated[float, typer.Option(help="Delay before the first streamed token.")] = 0.0,
    tokens_per_second: Annotated[float, typer.Option(help="Streaming pace; 0 = at once.")] = 0.0,
    completion_tokens: Annotated[int, typer.Option(help="Answer length in tokens.")] = 16,
    behaviour: Annotated[
        str | None,
        typer.Option(help="Full behaviour as JSON (faults included); overrides the flags."),
    ] = None,
) -> None:
    """Serve the fake OpenAI/Anthropic upstream used by tests and benchmarks."""
    from pydantic import ValidationError

    from propylon.testing import Behaviour, run_fake_upstream

    try:
        parsed = Behaviour.from_json(behaviour) if behaviour else None
    except ValidationError as exc:
        cli_edge.refuse(f"--behaviour: {cli_edge.validation_problem(exc)}")
    chosen = (
        parsed
        if parsed is not None
        else Behaviour(
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            tokens_per_second=tokens_per_second,
            completion_tokens=completion_tokens,
        )
    )
    run_fake_upstream(host, port, chosen)


@app.command()
def bench(
    only: Annotated[
        str | None,
        typer.Option(help="Comma-separated families, e.g. `gateway,cold_start` (default: all)."),
    ] = None,
    quick: Annotated[bool, typer.Option(help="Short runs: a smoke test, no measurement.")] = False,
    output: Annotated[
        Path, typer.Option(help="Markdown file whose bench sections are rewritten.")
    ] = Path("docs/benchmarks.md"),
    data_dir: DataDirOpt = None,
) -> None:
    """Benchmark Propylon against its baseline in the same run (source checkout only)."""
    import shlex
    import sys

    checkout = Path(__file__).resolve().parents[2]
    if not (checkout / "bench" / "suite.py").is_file():
        raise typer.BadParameter("`propylon bench` needs a source checkout (its bench/ folder)")
    sys.path.insert(0, str(checkout))
    from bench.suite import run_cli

    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    command = shlex.join(["propylon", "bench", *sys.argv[2:]])
    try:
        run_cli(names, quick=quick, output=output, data_dir=data_dir, command=command)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command()
def version() -> None:
    """Print Propylon's version."""
    typer.echo(__version__)


@app.command("config-docs")
def config_docs(
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Print the configuration reference generated from the settings' field descriptions."""
    from propylon.settings_docs import render_configuration_docs

    text = render_configuration_docs()
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")
app.add_typer(local_app, name="local")

eval_app = typer.Typer(no_args_is_help=True, help="Measure quality on local datasets.")
app.add_typer(eval_app, name="eval")
guard_app = typer.Typer(no_args_is_help=True, help="The prompt-injection detector.")
app.add_typer(guard_app, name="guard")


def _datasets_dir(data: Path) -> Path:
    if not data.is_dir():
        cli_edge.refuse(f"no datasets directory {data} (--data)")
    return data


DataOpt = Annotated[
    Path,
    typer.Option(
        "--data", help="The shared datasets directory.", file_okay=False, callback=_datasets_dir
    ),
]
Int8Opt = Annotated[
    bool,
    typer.Option(
        "--int8", help="The local embedding model with int8 kernels (setting `local_int8`)."
    ),
]


@guard_app.command("train")
def guard_train(
    data: DataOpt = Path("../shared/data"),
    output: Annotated[
        Path | None, typer.Option(help="Weights file to write (default: the shipped one).")
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads of the embedding model.")] = 1,
    retrieved_only: Annotated[
        bool,
        typer.Option(help="Refit only the retrieved head; keep the user head of the weights."),
    ] = False,
) -> None:
    """Retrain the injection classifier from the public datasets (about two minutes)."""
    from importlib.resources import files

    from propylon.guard.classifier import InjectionClassifier
    from propylon.guard.training import train
    from propylon.local.minilm import MiniLMEmbedder

    target = output or Path(str(files("propylon.guard") / "weights" / "classifier.npz"))
    keep = None
    if retrieved_only:
        keep = InjectionClassifier.load(target if target.is_file() else None, ("user",))
    embedder = MiniLMEmbedder.load(threads=threads, max_batch=32)
    try:
        classifier = train(data, embedder, keep)
    finally:
        embedder.close()
    classifier.save(target)
    typer.echo(f"wrote {target}; thresholds {classifier.metadata['thresholds']}")


@guard_app.command("train-first-stage")
def guard_train_first_stage(
    data: DataOpt = Path("../shared/data"),
    output: Annotated[
        Path | None, typer.Option(help="Weights file to write (default: the shipped one).")
    ] = None,
    classifier: Annotated[
        Path | None,
        typer.Option(help="Full classifier the band is chosen against (default: the shipped one)."),
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads of the embedding model.")] = 1,
    student: Annotated[
        str,
        typer.Option(
            help="How the static head is fitted: 'labels' (shipped) or 'distilled' (to the "
            "full head's scores, on about 5,300 more texts it embeds)."
        ),
    ] = "labels",
) -> None:
    """Refit the guard's first stage (static head, its thresholds, its band) against the full
    classifier's user head: run it after `propylon guard train` (about ten minutes)."""
    if student not in ("labels", "distilled"):
        raise typer.BadParameter("'labels' or 'distilled'", param_hint="--student")
    from importlib.resources import files

    from propylon.guard import corpus, fitting
    from propylon.guard import first_stage_training as training
    from propylon.guard.classifier import InjectionClassifier
    from propylon.local.minilm import MiniLMEmbedder
    from propylon.local.static import StaticEmbedder

    target = output or Path(str(files("propylon.guard") / "weights" / "first_stage.npz"))
    full = InjectionClassifier.load(classifier)
    static = StaticEmbedder.load()
    embedder = MiniLMEmbedder.load(threads=threads, max_batch=32)
    try:
        examples = corpus.load(data)
        featurised = fitting.featurise(embedder, examples, "user")
        unlabelled = None
        if student == "distilled":
            extra = training.unlabelled_examples(data, examples)
            unlabelled = training.unlabelled(fitting.featurise(embedder, extra, "user"), static)
    finally:
        embedder.close()
    pair = training.Pair(featurised, training.static_featurised(featurised, static), unlabelled)
    first = training.fit_against(pair, full, static.weights_sha256, student)
    first.save(target)
    typer.echo(f"wrote {target}: band {first.band}, thresholds {first.thresholds}")


@eval_app.command("guard")
def eval_guard(
    data: DataOpt = Path("../shared/data"),
    output: Annotated[
        Path | None,
        typer.Option(help="Markdown file whose 'Prompt-injection detection' section is replaced."),
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option(help="Weights the documents are screened with (default: the shipped ones)."),
    ] = None,
    per_source: Annotated[
        int, typer.Option(help="Texts sampled per corpus source (a smoke run: 10).")
    ] = 400,
    limit: Annotated[
        int | None, typer.Option(help="At most this many documents per document set.")
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads of the embedding model.")] = 1,
    int8: Int8Opt = False,
    user_int8: Annotated[
        bool,
        typer.Option(
            help="Read the held-out user input with MiniLM's int8 kernels, as the server does "
            "(`guard.user_int8`, on by default); heads are fitted on exact vectors either way."
        ),
    ] = True,
    documents_only: Annotated[
        bool, typer.Option(help="Only the attacks inside documents (the ingestion screen).")
    ] = False,
) -> None:
    """Prompt-injection detection on data it was not fitted on: leave-one-source-out on user
    input (by source and length), and attacks inside documents screened with server defaults
    (tens of minutes at the default sizes; `--per-source 10 --limit 10` for a smoke run)."""
    from propylon.guard import corpus, evaluation, fitting, generalisation
    from propylon.guard.classifier import InjectionClassifier
    from propylon.guard.detector import InjectionDetector
    from propylon.local.minilm import MiniLMEmbedder
    from propylon.rag.chunking import Chunker, ChunkingConfig
    from propylon.rag.engine import token_counter
    from propylon.rag.parsing.extract import parse_document
    from propylon.settings import RetrievalSettings

    started = time.monotonic()
    embedder = MiniLMEmbedder.load(threads=threads, max_batch=32, int8=int8)
    chunker = Chunker(ChunkingConfig(), token_counter())

    def chunk(text: str) -> list[str]:
        parsed = parse_document(text.encode("utf-8"), filename="document.txt")
        return [c.text for c in chunker.chunk(parsed)]

    exclude_at = RetrievalSettings().exclude_risk_at or 1.0
    unseen = None
    try:
        if not documents_only:
            examples = corpus.load(data, per_source)
            featurised = fitting.featurise(embedder, examples, "user")
            gap = None
            if user_int8 and not int8:  # fitted on exact vectors, scored as served
                reader = _served_reader(threads)
                try:
                    served = fitting.featurise(reader, examples, "user")
                finally:
                    reader.close()
                held = generalisation.leave_one_source_out(featurised, served)
                shipped = InjectionClassifier.load().heads["user"]
                gap = generalisation.largest_gap(featurised, served, shipped)
            else:
                held = generalisation.leave_one_source_out(featurised)
            unseen = generalisation.render_markdown(held, time.monotonic() - started, gap)
        detector = InjectionDetector(InjectionClassifier.load(weights), embedder)
        sets = evaluation.document_sets(data, limit)
        rows = asyncio.run(evaluation.evaluate_documents(detector, sets, chunk, exclude_at))
        dev_texts = evaluation.dev_documents(data)[:limit]
        dev_scores = asyncio.run(evaluation.document_scores(detector, dev_texts, chunk))
    finally:
        embedder.close()
    dev = (len(dev_texts), evaluation.exclusion_threshold(dev_scores))
    documents = evaluation.render_markdown(rows, exclude_at, dev)
    if unseen is not None:
        typer.echo(unseen)
        if output is not None:
            generalisation.write_section(output, unseen)
    typer.echo(documents)
    if output is not None:
        evaluation.write_section(output, documents)


def _served_reader(threads: int) -> MiniLMEmbedder:
    """MiniLM on int8 kernels, one window a call, as ``guard.user_int8`` reads a request's
    deferred window: the kernels quantise a call's activations with one scale, so a batch
    would move each vector."""
    from propylon.local.minilm import MiniLMEmbedder

    return MiniLMEmbedder.load(threads=threads, max_batch=1, int8=True)


@eval_app.command("guard-first-stage")
def eval_guard_first_stage(
    data: DataOpt = Path("../shared/data"),
    output: Annotated[
        Path | None,
        typer.Option(help="Markdown file whose 'Guard first stage' section is replaced."),
    ] = None,
    per_source: Annotated[
        int, typer.Option(help="Texts sampled per corpus source (a smoke run: 10).")
    ] = 400,
    threads: Annotated[int, typer.Option(help="CPU threads of the embedding model.")] = 1,
    user_int8: Annotated[
        bool,
        typer.Option(
            help="The cascade's MiniLM stage reads int8 kernels, as the server does "
            "(`guard.user_int8`, on by default); the full column stays exact."
        ),
    ] = True,
) -> None:
    """The guard's static first stage, leave-one-source-out beside the full classifier (the
    shipped weights: `propylon guard train-first-stage`)."""
    from propylon.guard import corpus, fitting
    from propylon.guard import first_stage_training as training
    from propylon.local.minilm import MiniLMEmbedder
    from propylon.local.static import StaticEmbedder

    started = time.monotonic()
    static = StaticEmbedder.load()
    embedder = MiniLMEmbedder.load(threads=threads, max_batch=32)
    closing = contextlib.ExitStack()
    closing.callback(embedder.close)
    try:
        examples = corpus.load(data, per_source)
        full = fitting.featurise(embedder, examples, "user")
        more = per_source * training.UNLABELLED_PER_SOURCE // corpus.PER_SOURCE
        extra = training.unlabelled_examples(data, examples, more)
        unlabelled = training.unlabelled(fitting.featurise(embedder, extra, "user"), static)
        sample = [e.text[:600] for e in full.examples[:: max(1, len(full.examples) // 200)]]
        readers: list[tuple[str, Any]] = [("MiniLM", embedder), ("static", static)]
        served = None
        if user_int8:
            reader = _served_reader(threads)
            closing.callback(reader.close)
            served = fitting.featurise(reader, examples, "user")
            readers.insert(1, ("MiniLM int8", reader))
        cpu = {}
        for name, model in readers:
            began = time.process_time()
            for text in sample:
                model.embed_sync([text])
            cpu[name] = 1e6 * (time.process_time() - began) / len(sample)
    finally:
        closing.close()
    pair = training.Pair(full, training.static_featurised(full, static), unlabelled, served)
    held = training.leave_one_source_out(pair, ("labels", "distilled"))
    seconds = time.monotonic() - started
    shipped = held.pop(training.SHIPPED_STUDENT)
    section = training.render_markdown(
        shipped, seconds, cpu, next(iter(held.values())), served=served is not None
    )
    typer.echo(section)
    if output is not None:
        training.write_section(output, section)


@eval_app.command("cache")
def eval_cache(
    data: Annotated[
        Path, typer.Option(help="The shared data directory (paraphrase-pairs/, pairs-*/).")
    ] = Path("../shared/data"),
    output: Annotated[
        Path | None,
        typer.Option(help="Markdown file whose 'Semantic cache precision' section is replaced."),
    ] = None,
    fit: Annotated[
        Path | None,
        typer.Option(help="Also write the judge's weights, fitted on every source, here."),
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads of the embedding model.")] = 1,
    int8: Int8Opt = False,
) -> None:
    """Semantic cache: wrong hits and answered paraphrases on held-out pair sources."""
    from propylon.gateway.cache import evaluation, pair_sets
    from propylon.local.minilm import MODEL_ID, MiniLMEmbedder

    pairs = pair_sets.load(data)
    if not pairs:
        raise typer.BadParameter(f"no pair sources in {data}", param_hint="--data")
    embedder = MiniLMEmbedder.load(threads=threads, max_batch=32, int8=int8)
    try:
        prepared = asyncio.run(evaluation.prepare(pairs, embedder))
    finally:
        embedder.close()
    results = evaluation.leave_one_source_out(prepared)
    weights = evaluation.shipped(prepared)
    section = evaluation.render_markdown(results, weights, MODEL_ID)
    typer.echo(section)
    if fit is not None:
        fit.write_bytes(weights.to_json(embedder=MODEL_ID, command="propylon eval cache --fit"))
    if output is not None:
        evaluation.write_section(output, section)


@eval_app.command("cache-first-stage")
def eval_cache_first_stage(
    data: Annotated[
        Path, typer.Option(help="The shared data directory (paraphrase-pairs/, pairs-*/).")
    ] = Path("../shared/data"),
    output: Annotated[
        Path | None,
        typer.Option(help="Markdown file whose 'Semantic cache first stage' section is replaced."),
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads of the embedding model.")] = 1,
) -> None:
    """Semantic cache behind its static first stage: hits lost and embedder calls saved, on
    held-out pair sources."""
    from propylon.gateway.cache import evaluation, first_stage_eval, pair_sets
    from propylon.local.minilm import MODEL_ID, MiniLMEmbedder
    from propylon.local.static import StaticEmbedder

    pairs = pair_sets.load(data)
    if not pairs:
        raise typer.BadParameter(f"no pair sources in {data}", param_hint="--data")
    embedder = MiniLMEmbedder.load(threads=threads, max_batch=32)
    try:
        prepared = asyncio.run(evaluation.prepare(pairs, embedder))
    finally:
        embedder.close()
    first, unrelated = asyncio.run(
        first_stage_eval.first_similarities(pairs, StaticEmbedder.load())
    )
    rows = first_stage_eval.leave_one_source_out(prepared, first, unrelated)
    shipped = first_stage_eval.shipped_threshold(prepared, first)
    section = first_stage_eval.render_markdown(rows, shipped, MODEL_ID)
    typer.echo(section)
    if output is not None:
        first_stage_eval.write_section(output, section)


@eval_app.command("extractive")
def eval_extractive(
    dataset: Annotated[
        Path, typer.Option(help="SciFact in BEIR form (corpus.jsonl.gz, queries, qrels).")
    ] = Path("../shared/data/scifact"),
    questions: Annotated[
        Path, typer.Option(help="Off-topic questions, JSON lines with `text` and `split`.")
    ] = Path("../shared/data/guard-benign-tasks/intent_trigger_words.jsonl"),
    output: Annotated[
        Path | None,
        typer.Option(help="Markdown file whose 'Extractive answers' section is replaced."),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(help="At most this many dev cases of each kind (held-out: all of them)."),
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads of the embedding model.")] = 1,
) -> None:
    """local/extractive: answerable questions answered with a gold citation, others refused;
    threshold chosen on dev, reported on held-out data."""
    import shlex
    import sys

    from propylon.local import extractive_eval as evaluation
    from propylon.local.minilm import MiniLMEmbedder
    from propylon.report_section import write_section

    if not (dataset / "corpus.jsonl.gz").is_file():
        raise typer.BadParameter(f"no corpus.jsonl.gz in {dataset}", param_hint="--dataset")
    if not questions.is_file():
        raise typer.BadParameter(f"no such file: {questions}", param_hint="--questions")
    dev_cases = evaluation.load_cases(dataset, questions, "dev", limit)
    held_out_cases = evaluation.load_cases(dataset, questions, "held_out")
    minilm = MiniLMEmbedder.load(threads=threads, max_batch=32)
    embedder = evaluation.CachedEmbedder(minilm)

    async def _run() -> tuple[
        list[evaluation.Score],
        evaluation.Score,
        evaluation.Score,
        list[tuple[str, evaluation.Score]],
    ]:
        dev = [await evaluation.score(dev_cases, embedder, t) for t in evaluation.THRESHOLDS]
        chosen = evaluation.choose(dev)
        held_out = await evaluation.score(held_out_cases, embedder, chosen.threshold)
        return dev, chosen, held_out, await evaluation.alternatives(dev_cases, embedder, chosen)

    try:
        dev, chosen, held_out, ablation = asyncio.run(_run())
    finally:
        minilm.close()
    command = shlex.join(["propylon", "eval", "extractive", *sys.argv[3:]])
    section = evaluation.render_markdown(dev, chosen, held_out, command, ablation)
    typer.echo(section)
    if output is not None:
        write_section(output, section, evaluation.SECTION)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to ingest.")],
    collection: Annotated[str, typer.Option("--collection", help="Collection name or id.")],
    url: Annotated[
        str, typer.Option(envvar="PROPYLON_URL", help="The running Propylon server.")
    ] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None, typer.Option(envvar="PROPYLON_API_KEY", help="API key (tenant) to use.")
    ] = None,
    create: Annotated[bool, typer.Option(help="Create the collection when missing.")] = True,
) -> None:
    """Upload files (folders are walked) and follow their ingestion; skips what is in and
    lists the files that are not documents."""
    from propylon.rag.ingest_client import IngestClient, IngestCommandError

    try:
        outcome = asyncio.run(IngestClient(url, api_key).run(paths, collection, create=create))
    except IngestCommandError as exc:
        cli_edge.refuse(str(exc))
    except OSError as exc:
        typer.echo(f"cannot reach {url}: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"{outcome.succeeded} ingested, {outcome.skipped} already there, "
        f"{len(outcome.unsupported)} not documents, {len(outcome.failed)} failed"
    )
    for name, reason in outcome.unsupported.items():
        typer.echo(f"  not ingested: {name}: {reason}", err=True)
    for name, reason in outcome.failed.items():
        typer.echo(f"  failed: {name}: {reason}", err=True)
    if outcome.failed:
        raise typer.Exit(1)


sources_app = typer.Typer(no_args_is_help=True, help="Sources that keep collections in sync.")
app.add_typer(sources_app, name="sources")
UrlOpt = Annotated[str, typer.Option(envvar="PROPYLON_URL", help="The running Propylon server.")]
KeyOpt = Annotated[
    str | None, typer.Option(envvar="PROPYLON_API_KEY", help="API key (tenant) to use.")
]


@sources_app.command("sync")
def sources_sync(
    source: Annotated[str, typer.Argument(help="The source's id.")],
    collection: Annotated[str, typer.Option("--collection", help="Collection name or id.")],
    url: UrlOpt = "http://127.0.0.1:8000",
    api_key: KeyOpt = None,
    wait: Annotated[bool, typer.Option(help="Follow the sync until it ends.")] = True,
) -> None:
    """Sync a source now and print its counts (added, replaced, deleted, skipped, rejected)."""
    from propylon.rag.ingest_client import IngestCommandError
    from propylon.rag.sources.client import SourcesClient

    try:
        job = asyncio.run(SourcesClient(url, api_key).sync(collection, source, wait=wait))
    except IngestCommandError as exc:
        raise typer.BadParameter(str(exc)) from None
    except OSError as exc:
        typer.echo(f"cannot reach {url}: {exc}", err=True)
        raise typer.Exit(2) from None
    result = job.get("result") or {}
    counts = ", ".join(
        f"{result[k]} {k}" for k in ("added", "replaced", "deleted", "skipped", "rejected")
        if k in result
    )  # fmt: skip
    typer.echo(f"job {job['id']}: {job['state']}" + (f": {counts}" if counts else ""))
    if job["state"] in ("failed", "cancelled"):
        typer.echo(f"  {job.get('reason') or job['state']}", err=True)
        raise typer.Exit(1)


@sources_app.command("list")
def sources_list(
    collection: Annotated[str, typer.Option("--collection", help="Collection name or id.")],
    url: UrlOpt = "http://127.0.0.1:8000",
    api_key: KeyOpt = None,
) -> None:
    """The collection's sources, with their last sync."""
    from propylon.rag.ingest_client import IngestCommandError
    from propylon.rag.sources.client import SourcesClient

    try:
        rows = asyncio.run(SourcesClient(url, api_key).sources(collection))
    except IngestCommandError as exc:
        raise typer.BadParameter(str(exc)) from None
    for row in rows:
        where = row["config"].get("url") or row["config"].get("path") or row["config"].get("bucket")
        typer.echo(
            f"{row['id']}  {row['type']:<6} {where}  documents={row['document_count']}  "
            f"last_sync={row['last_sync_at'] or '-'}  {row['last_result'] or ''}"
        )


@eval_app.command("bm25")
def eval_bm25(
    dataset: Annotated[
        Path, typer.Option(help="A BEIR dataset directory (corpus.jsonl.gz, queries, qrels).")
    ] = Path("../shared/data/scifact"),
    max_documents: Annotated[
        int | None, typer.Option(help="Index only the judged documents and this many in all.")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """BM25 in PostgreSQL vs `bm25s` (nDCG@10 on the test queries; bm25s is a dev extra)."""
    from propylon.db.connect import open_database
    from propylon.db.migrator import migrate as apply
    from propylon.rag.bm25 import BM25Params
    from propylon.rag.bm25_eval import BM25Report, evaluate_bm25, load_beir

    if not (dataset / "corpus.jsonl.gz").is_file():
        raise typer.BadParameter(f"no corpus.jsonl.gz in {dataset}", param_hint="--dataset")
    settings = cli_edge.settings(config, data_dir=data_dir)
    data = load_beir(dataset, max_documents=max_documents)

    async def _run() -> BM25Report:
        async with open_database(settings) as database:
            await apply(database)
            params = BM25Params(settings.rag.bm25_k1, settings.rag.bm25_b)
            return await evaluate_bm25(database, data, params=params)

    report = asyncio.run(_run())
    reference = report.bm25s_ndcg_at_10
    typer.echo(
        f"documents {report.documents}, queries {report.queries}\n"
        f"PostgreSQL BM25 nDCG@10 {report.ndcg_at_10:.4f}\n"
        + (
            f"bm25s          nDCG@10 {reference:.4f}  (difference {report.difference:.4f})\n"
            if reference is not None
            else "bm25s not installed: no comparison\n"
        )
        + f"index {report.index_s:.1f} s, {report.queries} searches {report.search_s:.1f} s"
    )
    if report.difference is not None and report.difference > 0.01:
        raise typer.Exit(1)


@eval_app.command("rerank")
def eval_rerank(
    dataset: Annotated[
        Path, typer.Option(help="A BEIR dataset directory (corpus.jsonl.gz, queries, qrels).")
    ] = Path("../shared/data/scifact"),
    output: Annotated[
        Path | None,
        typer.Option(help="Markdown file whose 'Reranking' section is replaced."),
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads of the embedding model.")] = 2,
    candidates: Annotated[int, typer.Option(help="First-stage hits handed to the reranker.")] = 20,
    queries: Annotated[
        int | None, typer.Option(help="Only the first N test claims (file order).")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """nDCG@10 and recall@10 of hybrid search alone and reranked by `local/minilm-rerank`."""
    from propylon.rag import rerank_eval

    if not (dataset / "corpus.jsonl.gz").is_file():
        raise typer.BadParameter(f"no corpus.jsonl.gz in {dataset}", param_hint="--dataset")
    report = asyncio.run(
        rerank_eval.run(
            cli_edge.settings(config, data_dir=data_dir),
            dataset,
            threads=threads,
            candidates=candidates,
            queries=queries,
            progress=lambda message: typer.echo(message, err=True),
        )
    )
    command = f"propylon eval rerank --candidates {candidates}" + (
        f" --queries {queries}" if queries else ""
    )
    section = rerank_eval.render_markdown(report, command)
    typer.echo(section)
    if output is not None:
        rerank_eval.write_section(output, section)


@eval_app.command("ingestion")
def eval_ingestion(
    output: Annotated[
        Path | None,
        typer.Option(help="Markdown file whose 'Ingestion quality' section is replaced."),
    ] = None,
    scanned_pages: Annotated[
        int, typer.Option(help="Scanned pages in the corpus (OCR is the slow part).")
    ] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the corpus's sentences and tables.")] = 24,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Text recall, table-cell recall, BM25 retrieval nDCG@10 and pages/s per stage on a corpus
    built here (PDFs with tables, two columns and scanned pages, PPTX, XLSX, EPUB); exits 1 if
    a target is missed. Retrieval runs keyword search itself, in a throw-away collection of the
    configured database (the embedded one when none is)."""
    import datetime
    import os
    import platform

    from propylon.db.connect import open_database
    from propylon.db.migrator import migrate as apply
    from propylon.rag import ingestion_eval
    from propylon.rag.engine import token_counter

    settings = cli_edge.settings(config, data_dir=data_dir)
    samples = ingestion_eval.build_corpus(seed, scanned_pages)

    async def _run() -> list[ingestion_eval.KindScore]:
        async with open_database(settings) as database:
            await apply(database)
            return await ingestion_eval.evaluate(samples, token_counter(), database)

    rows = asyncio.run(_run())
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    host = f"{platform.machine()} ({platform.node()}, {os.cpu_count()} CPUs)"
    section = ingestion_eval.render_markdown(rows, when=when, host=host)
    typer.echo(section)
    if output is not None:
        ingestion_eval.write_section(output, section)
    if not ingestion_eval.passed(rows):
        raise typer.Exit(1)


@eval_app.command("retrieval")
def eval_retrieval(
    dataset: Annotated[
        Path, typer.Option(help="A BEIR dataset directory (corpus.jsonl.gz, queries, qrels).")
    ] = Path("../shared/data/scifact"),
    output: Annotated[
        Path | None,
        typer.Option(help="Markdown file whose 'Retrieval quality' section is replaced."),
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    threads: Annotated[int, typer.Option(help="CPU threads of the embedding model.")] = 2,
    citation_queries: Annotated[
        int | None, typer.Option(help="Answer at most this many claims in the citation check.")
    ] = None,
    int8: Int8Opt = False,
) -> None:
    """Search quality (nDCG@10, recall@10/100: dense, BM25, hybrid) and the citation check."""
    from propylon.rag import evaluation

    if not (dataset / "corpus.jsonl.gz").is_file():
        raise typer.BadParameter(f"no corpus.jsonl.gz in {dataset}", param_hint="--dataset")
    settings = cli_edge.settings(config, data_dir=data_dir)
    report = asyncio.run(
        evaluation.run(
            settings,
            dataset,
            threads=threads,
            int8=int8 or settings.local_int8,
            citation_queries=citation_queries,
            progress=lambda message: typer.echo(message, err=True),
        )
    )
    section = evaluation.render_markdown(report, "propylon eval retrieval")
    typer.echo(section)
    if output is not None:
        evaluation.write_section(output, section)


def main() -> None:
    try:
        app()
    except PropylonError as exc:  # a database that does not answer, say: a message, no traceback
        typer.echo(f"error: {exc.message}", err=True)
        raise SystemExit(1) from None
    except FileNotFoundError as exc:  # a file a dataset directory lacks
        typer.echo(f"error: no such file: {exc.filename or exc}", err=True)
        raise SystemExit(1) from None
    except OSError as exc:  # a port in use, a directory not writable: the system's own words
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
