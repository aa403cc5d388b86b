"""A static embedding model distilled from the shipped MiniLM: one vector per word piece.

The Model2Vec method (``static_build.py`` makes the table): every word piece of MiniLM's
vocabulary was run through MiniLM once, the outputs reduced by PCA and weighted by the
piece's estimated frequency (rare pieces count more). A sentence's vector is then the mean of
its pieces' rows: a tokenizer call and a gather, tens of microseconds instead of the
transformer's milliseconds. It is a first stage, not a replacement: cosines are coarser than
MiniLM's, so the guard and the semantic cache use it to decide the easy cases and ask MiniLM
about the rest.

The table ships in ``assets/static_minilm.bin`` with its sha256 beside it
(``static_minilm.sha256``); a table whose bytes do not match is refused at load.
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tokenizers import Tokenizer

from propylon.gateway.protocol import Embeddings
from propylon.local.minilm import TOKENIZER_SHA256, ModelFileCorrupted, read_verified

MODEL_ID = "static-minilm"
ASSET = "static_minilm.bin"
CHECKSUM = "static_minilm.sha256"
MAGIC = b"PSTATIC1"
MAX_PIECES = 512  # a window the guard reads is at most 600 characters; longer text is cut
RECENT = 64  # texts whose vectors are kept: the guard and the semantic cache read one message

Vectors = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class StaticTable:
    """One int8 row per word piece with its float32 scale, and how the table was made."""

    rows: NDArray[np.int8]
    scales: NDArray[np.float32]
    metadata: dict[str, Any]

    def to_bytes(self) -> bytes:
        """The asset: magic, header length, sorted JSON header, rows, scales (little endian)."""
        header = json.dumps(
            {**self.metadata, "shape": list(self.rows.shape)}, sort_keys=True
        ).encode("utf-8")
        return b"".join(
            [
                MAGIC,
                struct.pack("<I", len(header)),
                header,
                np.ascontiguousarray(self.rows, dtype=np.int8).tobytes(),
                np.ascontiguousarray(self.scales, dtype="<f4").tobytes(),
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> StaticTable:
        if not data.startswith(MAGIC):
            raise ModelFileCorrupted("not a static embedding table (bad magic)")
        (length,) = struct.unpack_from("<I", data, len(MAGIC))
        start = len(MAGIC) + 4
        metadata: dict[str, Any] = json.loads(data[start : start + length])
        vocab, dims = metadata.pop("shape")
        offset = start + length
        rows = np.frombuffer(data, dtype=np.int8, count=vocab * dims, offset=offset)
        scales = np.frombuffer(data, dtype="<f4", count=vocab, offset=offset + vocab * dims)
        return cls(rows.reshape(vocab, dims), scales.astype(np.float32), metadata)

    def write(self, directory: Path) -> str:
        """Write the asset and its checksum file into ``directory``; return the sha256."""
        data = self.to_bytes()
        digest = hashlib.sha256(data).hexdigest()
        (directory / ASSET).write_bytes(data)
        (directory / CHECKSUM).write_text(f"{digest}  {ASSET}\n", encoding="utf-8")
        return digest


class StaticEmbedder:
    """An ``EmbeddingModel`` computing static sentence vectors on the calling thread.

    ``embed`` needs no worker thread: a short text costs less than handing it to one.
    """

    model_id: str = MODEL_ID

    def __init__(self, table: StaticTable, tokenizer: Tokenizer, sha256: str) -> None:
        self._rows = table.rows
        self._scales = table.scales
        self.metadata = table.metadata
        self.dimensions = int(table.rows.shape[1])
        self._tokenizer = tokenizer
        self.weights_sha256 = sha256
        # The guard's first stage and the semantic cache's each read the same user message:
        # the second asks for a vector the first just computed (``vector``).
        self._recent = functools.lru_cache(maxsize=RECENT)(self._computed)

    @classmethod
    def load(cls, directory: Traversable | None = None) -> StaticEmbedder:
        """Verify and load the table (the shipped one, or the one in ``directory``)."""
        where = directory if directory is not None else files("propylon.local") / "assets"
        expected = (where / CHECKSUM).read_text(encoding="utf-8").split()[0]
        table = StaticTable.from_bytes(read_verified(where / ASSET, expected))
        tokenizer_json = read_verified(
            files("propylon.local") / "assets" / "tokenizer.json", TOKENIZER_SHA256
        )
        return cls(table, static_tokenizer(tokenizer_json.decode("utf-8")), expected)

    def vector(self, text: str) -> Vectors:
        """The unit vector of ``text`` (zeros when it has no word piece), read-only: one of the
        last ``RECENT`` texts' is not computed again."""
        return self._recent(text)

    def _computed(self, text: str) -> Vectors:
        vector = self._mean(self._pieces(text))
        vector.flags.writeable = False  # shared by every caller asking for this text
        return vector

    def embed_sync(self, texts: list[str]) -> Vectors:
        """An ``(n, dimensions)`` float32 array of unit rows (the shape ``MiniLMEmbedder``
        gives, so the guard's training pipeline takes either)."""
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = self.vector(text)
        return out

    async def embed(self, texts: list[str], request: dict[str, Any] | None = None) -> Embeddings:
        """``embed_sync`` on the event loop's thread: a sentence costs less than a hand-off."""
        pieces = [self._pieces(text) for text in texts]
        vectors = [self._mean(ids).tolist() for ids in pieces]
        return Embeddings(vectors=vectors, prompt_tokens=sum(map(len, pieces)), model=self.model_id)

    def _pieces(self, text: str) -> list[int]:
        ids: list[int] = self._tokenizer.encode(text, add_special_tokens=False).ids
        return ids

    def _mean(self, ids: list[int]) -> Vectors:
        if not ids:
            return np.zeros(self.dimensions, dtype=np.float32)
        index = np.asarray(ids, dtype=np.int64)
        rows = self._rows[index].astype(np.float32) * self._scales[index, np.newaxis]
        mean: Vectors = rows.mean(axis=0)
        norm = float(np.linalg.norm(mean))
        return mean / np.float32(norm) if norm > 0 else mean

    def close(self) -> None:
        """Nothing to stop (the same shape as ``MiniLMEmbedder``)."""


def static_tokenizer(tokenizer_json: str) -> Tokenizer:
    """MiniLM's tokenizer, unpadded, cut at ``MAX_PIECES`` pieces."""
    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_PIECES)
    return tokenizer
