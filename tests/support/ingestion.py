"""Stand-ins for the job queue side of ingestion, and a cheap deterministic embedder."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from psycopg import AsyncConnection

from propylon.gateway.call import CallInfo
from propylon.gateway.protocol import Embeddings, JSONObject
from propylon.jobs.handler import JobCancelled, StopReason


@dataclass
class FakeJobContext:
    """A ``JobContext`` that records what the handler reports."""

    payload: dict[str, Any]
    tenant_id: str = "00000000-0000-0000-0000-000000000000"
    attempt: int = 1
    max_attempts: int = 3
    job_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    kind: str = "rag.ingest"
    collection_id: str | None = None
    events: list[tuple[str, float | None, dict[str, int] | None]] = field(default_factory=list)
    completed: list[dict[str, Any] | None] = field(default_factory=list)
    cancel_requested: bool = False
    stop_reason: StopReason | None = None
    worker_id: str = "fake-worker"

    @property
    def fence(self) -> dict[str, Any]:
        return {"id": self.job_id, "worker_id": self.worker_id, "attempt": self.attempt}

    async def progress(
        self,
        *,
        stage: str,
        fraction: float | None = None,
        message: str | None = None,
        counters: dict[str, int] | None = None,
    ) -> None:
        self.events.append((stage, fraction, counters))

    def cancelled(self) -> bool:
        return self.cancel_requested

    async def raise_if_cancelled(self) -> None:
        if self.cancel_requested:
            raise JobCancelled()

    async def complete_in(
        self, conn: AsyncConnection[Any], result: dict[str, Any] | None = None
    ) -> None:
        self.completed.append(result)

    @property
    def stages(self) -> list[str]:
        out: list[str] = []
        for stage, _, _ in self.events:
            if not out or out[-1] != stage:
                out.append(stage)
        return out


@dataclass
class Enqueued:
    job_id: str
    tenant_id: str
    kind: str
    payload: dict[str, Any]
    collection_id: str | None


class FakeJobs:
    """Records enqueued jobs instead of running them; tests run the handler themselves."""

    def __init__(self) -> None:
        self.jobs: list[Enqueued] = []

    async def enqueue(
        self,
        *,
        tenant_id: str,
        kind: str,
        payload: dict[str, Any],
        collection_id: str | None = None,
        max_attempts: int = 3,
        dedupe_key: str | None = None,
        conn: AsyncConnection[Any] | None = None,
    ) -> str:
        job = Enqueued(str(uuid.uuid4()), tenant_id, kind, payload, collection_id)
        self.jobs.append(job)
        return job.job_id

    def context(self, job: Enqueued, **overrides: Any) -> FakeJobContext:
        return FakeJobContext(
            payload=job.payload,
            tenant_id=job.tenant_id,
            job_id=job.job_id,
            collection_id=job.collection_id,
            **overrides,
        )


class HashEmbeddings:
    """An ``EmbeddingService`` whose unit vectors are derived from the text's hash."""

    model_id = "hash-384"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls: list[tuple[list[str], JSONObject | None, CallInfo | None]] = []
        self.fail_with: Exception | None = None

    async def embed(
        self, texts: list[str], request: JSONObject | None = None, call: CallInfo | None = None
    ) -> Embeddings:
        self.calls.append((texts, request, call))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_with is not None:
            raise self.fail_with
        vectors = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            vector = np.random.default_rng(seed).standard_normal(384)
            vectors.append((vector / np.linalg.norm(vector)).tolist())
        return Embeddings(vectors=vectors, prompt_tokens=len(texts), model=self.model_id)
