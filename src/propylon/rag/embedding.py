"""Chunk texts → vectors, in batches, through the gateway's embeddings path.

The embeddings service is whatever the composition root hands in (the gateway wrapped by its
layers), so ingestion uses the local MiniLM or any configured deployment with routing,
retries and budgets included, charged to the collection's tenant.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from propylon.errors import InvalidRequest
from propylon.gateway.call import CallInfo
from propylon.gateway.protocol import EmbeddingService
from propylon.principal import Principal

DIMENSIONS = 384  # the width of chunks.embedding (migration 0005)
OnBatch = Callable[[int, int], Awaitable[None]]  # (texts done, texts in all)
WeightsFor = Callable[[str], str | None]


@dataclass(frozen=True, slots=True)
class EmbeddedTexts:
    """Vectors in input order, and what made them (to detect a model change later)."""

    vectors: list[list[float]]
    model_id: str
    weights: str | None


class ChunkEmbedder:
    """Embeds texts ``batch_size`` at a time with ``service``.

    ``weights_for(model)`` gives the weights hash of a public model name when it is known
    (the bundled MiniLM), else ``None``; the provider's model id is stored either way.
    """

    def __init__(
        self,
        service: EmbeddingService,
        *,
        batch_size: int = 64,
        weights_for: WeightsFor | None = None,
    ) -> None:
        self._service = service
        self._batch_size = batch_size
        self._weights_for = weights_for or (lambda _model: None)

    async def embed(
        self,
        texts: Sequence[str],
        *,
        model: str,
        tenant_id: str | None = None,
        on_batch: OnBatch | None = None,
        parent_id: str | None = None,
        key_id: str | None = None,
    ) -> EmbeddedTexts:
        """Embed ``texts`` in batches: calls Propylon makes for itself (``origin: internal``,
        recorded apart from user traffic), for the job or request ``parent_id``, charged to
        the key ``key_id`` (the uploader's) when given."""
        vectors: list[list[float]] = []
        model_id = model
        principal = Principal.acting_for(tenant_id, key_id)
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start : start + self._batch_size])
            call = CallInfo(
                principal=principal, endpoint="rag", origin="internal", parent_id=parent_id
            )
            result = await self._service.embed(batch, {"model": model}, call)
            if len(result.vectors) != len(batch):
                raise InvalidRequest(
                    f"The embeddings model `{model}` returned {len(result.vectors)} vectors "
                    f"for {len(batch)} texts."
                )
            for vector in result.vectors:
                if len(vector) != DIMENSIONS:
                    raise InvalidRequest(
                        f"The embeddings model `{model}` returns {len(vector)} dimensions; "
                        f"collections store {DIMENSIONS}.",
                        param="embedding_model",
                    )
            vectors.extend(result.vectors)
            model_id = result.model or model
            if on_batch is not None:
                await on_batch(len(vectors), len(texts))
        return EmbeddedTexts(vectors, model_id, self._weights_for(model))
