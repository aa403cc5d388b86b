import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from propylon.gateway.protocol import EmbeddingModel
from propylon.local.minilm import (
    MAX_SEQ_LENGTH,
    MiniLMEmbedder,
    ModelFileCorrupted,
    batches,
    read_verified,
)


@pytest.fixture(scope="module")
def embedder() -> Iterator[MiniLMEmbedder]:
    model = MiniLMEmbedder.load(threads=1, max_batch=4)
    yield model
    model.close()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_similarities_match_sentence_transformers(embedder: MiniLMEmbedder) -> None:
    food, bread, baby = embedder.embed_sync(
        [
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The girl is carrying a baby.",
        ]
    )
    assert cosine(food, bread) == pytest.approx(0.755, abs=0.005)
    assert cosine(food, baby) == pytest.approx(-0.105, abs=0.01)


def test_vectors_are_384_float32_unit_rows(embedder: MiniLMEmbedder) -> None:
    vectors = embedder.embed_sync(["one", "two words", ""])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (embedder.model_id, embedder.dimensions) == ("all-MiniLM-L6-v2", 384)


def test_no_texts_give_an_empty_matrix(embedder: MiniLMEmbedder) -> None:
    assert embedder.embed_sync([]).shape == (0, 384)


def test_order_is_kept_across_internal_batches_of_mixed_lengths(
    embedder: MiniLMEmbedder,
) -> None:
    texts = [f"{'word ' * (n * 7 % 23)}sentence number {n}" for n in range(11)]
    together = embedder.embed_sync(texts)
    one_by_one = np.vstack([embedder.embed_sync([text]) for text in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_padding_does_not_change_a_vector(embedder: MiniLMEmbedder) -> None:
    short = "A man is eating food."
    alone = embedder.embed_sync([short])[0]
    beside_a_long_text = embedder.embed_sync([short, "many more words " * 30])[0]
    np.testing.assert_allclose(alone, beside_a_long_text, atol=1e-5)


def test_long_texts_are_truncated_to_256_word_pieces(embedder: MiniLMEmbedder) -> None:
    long_text = "antidisestablishmentarianism " * 2000
    vectors = embedder.embed_sync([long_text, "short"])
    assert np.isfinite(vectors).all()
    assert embedder.count_tokens([long_text]) == MAX_SEQ_LENGTH


def test_count_tokens_includes_cls_and_sep(embedder: MiniLMEmbedder) -> None:
    assert embedder.count_tokens([""]) == 2
    assert embedder.count_tokens(["hello world", "hello"]) == 4 + 3


async def test_embed_matches_embed_sync_and_counts_tokens(embedder: MiniLMEmbedder) -> None:
    texts = ["A man is eating food.", "", "The girl is carrying a baby."]
    result = await embedder.embed(texts, {"user": "someone"})
    assert isinstance(embedder, EmbeddingModel)
    assert result.model == "all-MiniLM-L6-v2"
    assert result.prompt_tokens == embedder.count_tokens(texts)
    np.testing.assert_allclose(np.array(result.vectors), embedder.embed_sync(texts), atol=1e-6)


async def test_concurrent_embed_calls_each_get_their_own_vectors(
    embedder: MiniLMEmbedder,
) -> None:
    texts = [[f"request {n} text {m}" for m in range(n + 1)] for n in range(5)]
    results = await asyncio.gather(*(embedder.embed(batch) for batch in texts))
    for batch, result in zip(texts, results, strict=True):
        np.testing.assert_allclose(np.array(result.vectors), embedder.embed_sync(batch), atol=1e-6)


async def test_embed_leaves_the_event_loop_free(embedder: MiniLMEmbedder) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await embedder.embed(["a text of some length " * 10] * 16)
    ticker.cancel()
    assert ticks > 0


def test_read_verified_returns_the_bytes_when_the_hash_matches(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"weights")
    assert read_verified(path, hashlib.sha256(b"weights").hexdigest()) == b"weights"


def test_read_verified_refuses_a_file_with_another_hash(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"weights, tampered")
    with pytest.raises(ModelFileCorrupted, match=r"refusing to load .*model\.onnx"):
        read_verified(path, hashlib.sha256(b"weights").hexdigest())


def test_load_refuses_a_tampered_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("propylon.local.minilm.TOKENIZER_SHA256", "0" * 64)
    with pytest.raises(ModelFileCorrupted, match=r"tokenizer\.json"):
        MiniLMEmbedder.load()


async def test_a_single_short_text_embedded_twice_runs_the_model_once(
    embedder: MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    real = embedder._embed

    def counting(texts: list[str]) -> tuple[np.ndarray, int]:
        calls.append(texts)
        return real(texts)

    monkeypatch.setattr(embedder, "_embed", counting)
    first = await embedder.embed(["What does the memo remember?"])
    first.vectors[0][0] = 99.0  # the caller's copy: the memo must not change
    second = await embedder.embed(["What does the memo remember?"])
    assert len(calls) == 1
    assert second.vectors[0][0] != 99.0
    assert second.prompt_tokens == first.prompt_tokens
    np.testing.assert_allclose(
        second.vectors[0], embedder.embed_sync(["What does the memo remember?"])[0], atol=1e-6
    )
    await embedder.embed(["one", "two"])  # batches are not remembered
    await embedder.embed(["one", "two"])
    await embedder.embed(["x" * 2_001])  # nor long texts
    await embedder.embed(["x" * 2_001])
    assert len(calls) == 6  # embed_sync above, two batches, two long texts


def test_batches_keep_long_texts_alone_and_group_short_ones() -> None:
    # Larger batches run out of the CPU's caches: at most MAX_BATCH_TOKENS padded pieces.
    assert batches([256, 10, 256, 12], max_batch=16) == [[1, 3], [0], [2]]
    assert batches([40] * 7, max_batch=16) == [[0, 1, 2, 3, 4, 5], [6]]  # 6 x 40 <= 256
    assert batches([5] * 5, max_batch=2) == [[0, 1], [2, 3], [4]]
    assert batches([300], max_batch=16) == [[0]]  # a text over the budget still goes alone
    assert batches([], max_batch=16) == []
