"""Builds the context engine's parts from the settings (called by the composition root)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from propylon.db.database import Database
from propylon.gateway.protocol import EmbeddingService
from propylon.gateway.registry import ModelRegistry
from propylon.rag.bm25 import BM25Index, BM25Params
from propylon.rag.chunking import ChunkingConfig, CountTokens
from propylon.rag.collections import CollectionDefaults, CollectionService, JobEnqueuer
from propylon.rag.embedding import ChunkEmbedder
from propylon.rag.ingest import IngestionHandler, IngestLimits, RiskScreen
from propylon.rag.parsing import ParseLimits
from propylon.rag.sources.kinds import SourceRules
from propylon.rag.sources.service import SourceService
from propylon.rag.sources.store import SourceStore
from propylon.rag.sources.sync import SyncHandler
from propylon.rag.sources.web import WebLimits
from propylon.rag.store import CollectionStore
from propylon.sealed import SecretsKey
from propylon.settings import RagSettings, Settings
from propylon.tokens import TokenCounter

CHUNK_ENCODING_MODEL = "text-embedding-3-small"  # any cl100k_base model: chunk budgets use it


def build_store(settings: RagSettings, database: Database) -> CollectionStore:
    return CollectionStore(
        database, BM25Index(params=BM25Params(settings.bm25_k1, settings.bm25_b))
    )


def build_collection_service(
    settings: RagSettings, database: Database, jobs: JobEnqueuer, registry: ModelRegistry
) -> CollectionService:
    return CollectionService(
        build_store(settings, database),
        jobs,
        CollectionDefaults(
            embedding_model=settings.embedding_model,
            chunking=ChunkingConfig(settings.chunk_max_tokens, settings.chunk_overlap_tokens),
            max_upload_bytes=settings.max_upload_bytes,
            max_attempts=settings.max_attempts,
        ),
        check_embedding_model=partial(registry.resolve, kind="embeddings"),
    )


def source_rules(settings: RagSettings) -> SourceRules:
    sources = settings.sources
    return SourceRules(
        folder_roots=tuple(sources.folder_roots),
        web=WebLimits(
            hosts=frozenset(sources.url_hosts),
            max_pages=sources.max_pages,
            requests_per_s=sources.requests_per_s,
            timeout_s=sources.timeout_s,
            max_bytes=settings.max_upload_bytes,
            user_agent=sources.user_agent,
        ),
        min_interval_s=sources.min_interval_s,
        secrets=(
            SecretsKey.from_text(sources.secrets_key.get_secret_value())
            if sources.secrets_key is not None
            else None
        ),
    )


def build_source_service(
    settings: RagSettings, database: Database, collections: CollectionService, jobs: JobEnqueuer
) -> SourceService:
    return SourceService(SourceStore(database), collections, jobs, source_rules(settings))


def build_sync_handler(
    settings: RagSettings, database: Database, collections: CollectionService, jobs: JobEnqueuer
) -> SyncHandler:
    return SyncHandler(SourceStore(database), collections, jobs, source_rules(settings))


def build_ingestion_handler(
    settings: Settings,
    database: Database,
    embeddings: EmbeddingService,
    screen: RiskScreen | None = None,
    collections: CollectionService | None = None,
) -> IngestionHandler:
    rag = settings.rag
    return IngestionHandler(
        build_store(rag, database),
        ChunkEmbedder(
            embeddings, batch_size=rag.embed_batch_size, weights_for=weights_lookup(settings)
        ),
        token_counter(),
        IngestLimits(
            parse=ParseLimits(
                max_pages=rag.max_pages,
                max_decompressed_bytes=rag.max_decompressed_bytes,
                max_chars=rag.max_chars,
                parse_timeout_s=rag.parse_timeout_s,
                max_memory_bytes=rag.parse_memory_mb * 1024 * 1024,
                max_ocr_pages=rag.max_ocr_pages,
            ),
            embed_timeout_s=rag.embed_timeout_s,
        ),
        screen,
        collections.add_attachments if collections is not None else None,
    )


def token_counter() -> CountTokens:
    """Counts a chunk's tokens. The encoding loads on the first count, in a worker that
    ingests, rather than when any worker starts: it holds about 22 MB."""
    counter = TokenCounter()
    return lambda text: counter.count_text(text, CHUNK_ENCODING_MODEL)


def weights_lookup(settings: Settings) -> Callable[[str], str | None]:
    """The weights hash of a public embeddings model served only by the bundled MiniLM."""

    def lookup(model: str) -> str | None:
        for config in settings.models:
            if model != config.name and model not in config.aliases:
                continue
            if all(d.provider == "local" for d in config.deployments):
                from propylon.local.minilm import WEIGHTS_SHA256

                return WEIGHTS_SHA256
        return None

    return lookup
