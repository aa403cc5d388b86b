"""Token counts for chat requests, computed offline.

Stock tiktoken downloads its BPE files on first use. Propylon ships ``cl100k_base`` and
``o200k_base`` in ``tokens/bpe/`` and builds ``tiktoken.Encoding`` objects from them directly,
checking each file against the sha256 that ``tiktoken_ext.openai_public`` expects. Nothing is
fetched and no environment variable is read or written.

Counts feed a fast-fail check, not validation: every function here tolerates odd message
shapes and returns an estimate rather than raising. Plain chat messages match OpenAI's own
count exactly (the cookbook's example: 129 tokens on cl100k_base, 124 on o200k_base). Images,
audio and files, whose real cost we cannot know, count at their floor, so they never make us
refuse a request the provider would accept; tool definitions count a little high (see
``TokenCounter.count_messages``).

Counting is bounded: one call encodes at most ``EXACT_CHARS`` characters (about 5 ms); text
past that is estimated at the tokens-per-character rate of what was encoded (an 8 MB prompt
costs the same as a 32 KB one, not 2 s of a shared event loop). Ordinary requests are far
below the bound and are counted exactly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import tiktoken

from propylon.errors import PropylonError

# OpenAI's chat-format recipe (openai-cookbook, "How to count tokens with tiktoken"):
# <|start|>{role/name}\n{content}<|end|> costs 3 tokens around the fields, a name 1 more,
# and every reply is primed with <|start|>assistant<|message|>.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3

# An image costs 85 tokens at low detail on GPT-4o-class models; high detail adds 170 per
# 512 px tile, which we cannot know without fetching the image. 85 is the floor.
IMAGE_TOKENS = 85

EXACT_CHARS = 32_768  # characters one count encodes exactly; the rest is estimated
_DEFAULT_RATE = 0.5  # tokens per character when nothing was encoded yet (a high guess)

_IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image"})

_O200K_MODEL_PREFIXES = (
    "gpt-4o",
    "gpt-4.1",
    "gpt-4.5",
    "gpt-5",
    "gpt-oss",  # o200k_harmony: o200k_base plus chat-format special tokens
    "chatgpt-4o",
    "o1",
    "o3",
    "o4",
)


@dataclass(frozen=True, slots=True)
class _EncodingSpec:
    """What ``tiktoken_ext.openai_public`` defines for one encoding, minus the download."""

    file: str
    sha256: str
    pat_str: str
    special_tokens: dict[str, int]


_SPECS: dict[str, _EncodingSpec] = {
    "cl100k_base": _EncodingSpec(
        file="cl100k_base.tiktoken",
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=(
            r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+|"""
            r""" ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
        ),
        special_tokens={
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": _EncodingSpec(
        file="o200k_base.tiktoken",
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str="|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
                r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"""
                r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
}

_loaded: dict[str, tiktoken.Encoding] = {}
_load_lock = threading.Lock()


def _load_encoding(name: str) -> tiktoken.Encoding:
    """The named encoding, built once per process from the vendored file."""
    encoding = _loaded.get(name)
    if encoding is not None:
        return encoding
    with _load_lock:
        encoding = _loaded.get(name)
        if encoding is None:
            encoding = _build_encoding(name, _SPECS[name])
            _loaded[name] = encoding
    return encoding


def _build_encoding(name: str, spec: _EncodingSpec) -> tiktoken.Encoding:
    data = resources.files(__package__).joinpath("bpe", spec.file).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec.sha256:
        raise PropylonError(
            f"Vendored BPE file {spec.file} is corrupt (sha256 {actual}, expected {spec.sha256}); "
            "reinstall Propylon."
        )
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    encoding = tiktoken.Encoding(
        name,
        pat_str=spec.pat_str,
        mergeable_ranks=ranks,
        special_tokens=spec.special_tokens,
    )
    # The Rust core keeps its own copy of the ranks; tiktoken's Python object keeps the dict
    # only to pickle itself, which we never do. Dropping it frees 15 MB (cl100k_base) and
    # 27 MB (o200k_base) of RSS.
    encoding._mergeable_ranks = {}
    return encoding


class TokenCounter:
    """Counts tokens in text and chat requests with the encoding each model uses.

    Construction is free. Each encoding loads on first use (about 0.13 s for cl100k_base,
    0.35 s for o200k_base) and is then shared by every counter in the process; call
    ``preload`` at startup (``await asyncio.to_thread(counter.preload)``) to keep that off
    the first request. Counting is synchronous CPU work of roughly 0.2-0.3 ms per 1,000 tokens.
    """

    def encoding_name_for(self, model: str) -> str:
        """``o200k_base`` for GPT-4o-and-later OpenAI models, ``cl100k_base`` otherwise.

        Claude, local and unknown models get ``cl100k_base`` as an estimate. A routing prefix
        (``openai/gpt-4o``) and a fine-tune prefix (``ft:gpt-4o-mini:...``) are ignored.
        """
        base = model.rsplit("/", 1)[-1].lower().removeprefix("ft:")
        return "o200k_base" if base.startswith(_O200K_MODEL_PREFIXES) else "cl100k_base"

    def encoding_for(self, model: str) -> tiktoken.Encoding:
        """The tiktoken encoding for ``model``, loaded from the vendored files."""
        return _load_encoding(self.encoding_name_for(model))

    def preload(self, models: Iterable[str] | None = None) -> None:
        """Load now, so the first request does not pay for it, every encoding (or those of
        ``models``, and ``cl100k_base``, the default: ``o200k_base`` alone holds ~40 MB)."""
        names = (
            set(_SPECS)
            if models is None
            else {"cl100k_base", *(self.encoding_name_for(m) for m in models)}
        )
        for name in sorted(names):
            _load_encoding(name)

    def decode(self, tokens: list[int], encoding: str) -> str:
        """The text of ``tokens`` in the named encoding; ``ValueError`` for an unknown id."""
        loaded = _load_encoding(encoding)
        bad = next((t for t in tokens if not 0 <= t < loaded.n_vocab), None)
        if bad is not None:
            raise ValueError(f"token {bad} is not in {encoding} (0 to {loaded.n_vocab - 1})")
        return loaded.decode(tokens)

    def count_text(self, text: str, model: str) -> int:
        """Tokens in ``text``; special-token strings such as ``<|endoftext|>`` count as text.
        Exact up to ``EXACT_CHARS`` characters, estimated past them."""
        return _Tally(self.encoding_for(model))(text)

    def count_messages(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]] | None = None,
    ) -> int:
        """Prompt tokens for a chat request, following OpenAI's published recipe.

        Each message costs 3 tokens plus the tokens of its string fields (role, content,
        name, tool_call_id…), and 1 more with a ``name``; the reply priming costs 3. Beyond
        the recipe:

        * content given as parts counts text and refusal parts, ``IMAGE_TOKENS`` per image
          and nothing for other parts (audio, files), whose cost we cannot know;
        * an assistant's ``tool_calls`` (and legacy ``function_call``) count the function
          name and arguments;
        * ``tools`` count the compact JSON of each function spec. OpenAI renders tools in its
          own internal format, so this is an estimate: on the cookbook's weather tool it gives
          77 tokens where the API charges 71 (cl100k_base), 78 for 68 (o200k_base).

        Shapes that do not fit are skipped, never raised on.
        """
        encoding = _Tally(self.encoding_for(model))
        total = REPLY_PRIMING_TOKENS
        for message in messages if isinstance(messages, list) else ():
            if not isinstance(message, dict):
                continue
            total += TOKENS_PER_MESSAGE
            for key, value in message.items():
                total += _count_field(encoding, key, value)
                if key == "name" and isinstance(value, str):
                    total += TOKENS_PER_NAME
        for tool in tools if isinstance(tools, list) else ():
            total += _count_tool(encoding, tool)
        return total


class _Tally:
    """Counts the texts of one request: exactly until ``budget`` characters were encoded,
    then at the rate (tokens per character) seen so far."""

    def __init__(self, encoding: tiktoken.Encoding, budget: int = EXACT_CHARS) -> None:
        self._encoding = encoding
        self._left = budget
        self._chars = 0
        self._tokens = 0

    def __call__(self, text: str) -> int:
        exact = text if len(text) <= self._left else text[: self._left]
        tokens = 0
        if exact:
            tokens = len(self._encoding.encode_ordinary(exact))
            self._left -= len(exact)
            self._chars += len(exact)
            self._tokens += tokens
        rest = len(text) - len(exact)
        if rest:
            rate = self._tokens / self._chars if self._chars else _DEFAULT_RATE
            tokens += math.ceil(rest * rate)
        return tokens


def _count(encoding: _Tally, text: str) -> int:
    return encoding(text)


def _count_field(encoding: _Tally, key: str, value: Any) -> int:
    if isinstance(value, str):
        return _count(encoding, value)
    if key == "content" and isinstance(value, list):
        return sum(_count_part(encoding, part) for part in value)
    if key == "tool_calls" and isinstance(value, list):
        return sum(_count_call(encoding, call.get("function")) for call in _dicts(value))
    if key == "function_call":
        return _count_call(encoding, value)
    return 0


def _count_part(encoding: _Tally, part: Any) -> int:
    if isinstance(part, str):
        return _count(encoding, part)
    if not isinstance(part, dict):
        return 0
    kind = part.get("type")
    if not isinstance(kind, str):
        return 0
    if kind in _IMAGE_PART_TYPES:
        return IMAGE_TOKENS
    text = part.get(kind) if kind in ("text", "refusal") else None
    return _count(encoding, text) if isinstance(text, str) else 0


def _count_call(encoding: _Tally, function: Any) -> int:
    if not isinstance(function, dict):
        return 0
    total = 0
    name = function.get("name")
    if isinstance(name, str):
        total += _count(encoding, name)
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        total += _count(encoding, arguments)
    elif arguments is not None:
        total += _count(encoding, _compact_json(arguments))
    return total


def _count_tool(encoding: _Tally, tool: Any) -> int:
    if not isinstance(tool, dict):
        return 0
    function = tool.get("function")
    return _count(encoding, _compact_json(function if isinstance(function, dict) else tool))


def _compact_json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError, RecursionError):  # non-string keys, cycles, deep nesting
        return ""


def _dicts(values: list[Any]) -> list[dict[str, Any]]:
    return [value for value in values if isinstance(value, dict)]
