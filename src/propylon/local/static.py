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
import re
import struct
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tokenizers import Tokenizer
from tokenizers.models import WordPiece

from propylon.gateway.protocol import Embeddings
from propylon.local.minilm import TOKENIZER_SHA256, ModelFileCorrupted, read_verified

MODEL_ID = "static-minilm"
ASSET = "static_minilm.bin"
CHECKSUM = "static_minilm.sha256"
MAGIC = b"PSTATIC1"
MAX_PIECES = 512  # a window the guard reads is at most 600 characters; longer text is cut
RECENT = 64  # texts whose vectors are kept: the guard and the semantic cache read one message
WORDS = 20_000  # words whose pieces are kept (``WordPieces``): a few MB at most
FEW_NEW = 4  # new words a text may hold and still be split here (else: the tokenizer)
SHORT_WORD = 64  # characters of a new word split here (WordPiece's search is quadratic)
_BERT_NORMALIZER = {
    "type": "BertNormalizer",
    "clean_text": True,
    "handle_chinese_chars": True,
    "strip_accents": None,
    "lowercase": True,
}
_PARTS = re.compile(r"[a-z0-9]+|[^a-z0-9]")  # BERT: every other printable ASCII is punctuation
# ASCII controls other than tab, newline and carriage return: BERT's normalizer deletes them
# where ``str.split`` would split at some of them, so a text holding one is not split here.
_DELETED_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WORD = re.compile(r"\S+")  # what ``str.split`` returns, with its place in the text

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


class WordPieces:
    """MiniLM's tokenizer (``static_tokenizer``) for ASCII text, with each whitespace-separated
    word's pieces kept, so a text of known words costs dict lookups instead of a tokenizer
    call (about 120 µs a message in the gateway, 29 µs in a loop: its objects are cold there).

    Exact for ASCII: BERT's normalizer (lowercase, control characters deleted) acts character
    by character there, and its pre-tokenizer splits at whitespace, then splits off each
    punctuation character, so a word's pieces do not depend on its neighbours. A text with a
    few short new words (a name, a serial number) has them split here by the same WordPiece
    rule (longest known piece first, ``##`` inside a word, ``[UNK]`` for a word it cannot
    split or over ``max_input_chars_per_word``); any other text goes to the tokenizer whole,
    and the words it covered entirely are then kept, their pieces read off the tokens'
    character offsets. So is any text that is not ASCII.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        truncation = tokenizer.truncation
        if truncation is None or truncation["direction"] != "right":
            raise ValueError("WordPieces needs a tokenizer that cuts texts at their end")
        model = tokenizer.model
        if (  # their own settings, not the whole tokenizer's JSON (its vocabulary again)
            tokenizer.normalizer is None
            or json.loads(tokenizer.normalizer.__getstate__()) != _BERT_NORMALIZER
            or tokenizer.pre_tokenizer is None
            or json.loads(tokenizer.pre_tokenizer.__getstate__()) != {"type": "BertPreTokenizer"}
            or not isinstance(model, WordPiece)
        ):
            raise ValueError("WordPieces reads only BERT's lowercasing WordPiece tokenizer")
        self._tokenizer = tokenizer
        self._max: int = truncation["max_length"]  # the tokenizer's own cut, kept alike
        self._vocab: dict[str, int] = tokenizer.get_vocab()
        self._unk = self._vocab[model.unk_token]
        self._inside: str = model.continuing_subword_prefix
        self._max_chars: int = model.max_input_chars_per_word
        self._known: dict[str, tuple[int, ...]] = {}

    def __call__(self, text: str) -> list[int]:
        if not text.isascii() or _DELETED_CONTROLS.search(text):
            return self._encoded(text, ())
        words = text.split()  # ASCII whitespace left: space, tab, newline, carriage return
        known = self._known
        if len(known) >= WORDS:  # a new dict, not cleared: another thread may be reading it
            self._known = known = {}
        new = {word for word in words if word not in known}
        if len(new) > FEW_NEW or any(len(word) > SHORT_WORD for word in new):
            return self._encoded(text, words)
        for word in new:
            known[word] = self._split(word)
        ids: list[int] = []
        for word in words:
            ids += known[word]
            if len(ids) >= self._max:
                return ids[: self._max]
        return ids

    def _split(self, word: str) -> tuple[int, ...]:
        """BERT's pre-tokenizer and WordPiece on one ASCII word without whitespace."""
        vocab, ids = self._vocab, []
        for part in _PARTS.findall(word.lower()):  # letter-digit runs, single punctuation
            if len(part) > self._max_chars:
                ids.append(self._unk)
                continue
            pieces, start = [], 0
            while start < len(part):
                end = len(part)
                while end > start:
                    piece = part[start:end] if start == 0 else self._inside + part[start:end]
                    if piece in vocab:
                        pieces.append(vocab[piece])
                        break
                    end -= 1
                else:  # no piece of the vocabulary starts here: the whole part is unknown
                    pieces = [self._unk]
                    break
                start = end
            ids += pieces
        return tuple(ids)

    def _encoded(self, text: str, words: list[str] | tuple[()]) -> list[int]:
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        ids: list[int] = encoding.ids
        if words:
            self._keep(text, ids, encoding.offsets)
        return ids

    def _keep(self, text: str, ids: list[int], offsets: list[tuple[int, int]]) -> None:
        """Keep each word's pieces: the tokens starting inside it. The tokens stop early
        when the tokenizer cut the text: the words past the last token's end are not kept,
        nor the word it ends in (its remaining pieces were cut)."""
        if not ids:
            return
        covered = offsets[-1][0] if len(ids) >= self._max else offsets[-1][1]
        token = 0
        known = self._known
        for match in _WORD.finditer(text):
            end = match.end()
            if end > covered or len(known) >= WORDS:
                break
            first = token
            while token < len(ids) and offsets[token][0] < end:
                token += 1
            known[match.group()] = tuple(ids[first:token])


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
        self._pieces = WordPieces(tokenizer)
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

    def _mean(self, ids: list[int]) -> Vectors:
        if not ids:
            return np.zeros(self.dimensions, dtype=np.float32)
        index = np.asarray(ids, dtype=np.intp)
        # The scaled rows' sum as one product (normalised, the mean's direction): the same
        # vector to float32 rounding, in a third of the numpy calls.
        total: Vectors = self._scales[index] @ self._rows[index].astype(np.float32)
        norm = float(np.sqrt(total @ total))
        return total / np.float32(norm) if norm > 0 else total

    def close(self) -> None:
        """Nothing to stop (the same shape as ``MiniLMEmbedder``)."""


def static_tokenizer(tokenizer_json: str) -> Tokenizer:
    """MiniLM's tokenizer, unpadded, cut at ``MAX_PIECES`` pieces."""
    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_PIECES)
    return tokenizer
