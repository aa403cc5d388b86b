"""The ``input`` of an embeddings request: a string, strings, a token array or token arrays,
as OpenAI's API allows (LangChain's ``OpenAIEmbeddings`` sends cl100k token arrays).

Token arrays are decoded to text with ``TOKEN_ENCODING`` for the models that read text (the
local MiniLM and any non-OpenAI deployment); OpenAI-compatible deployments receive the
original arrays unchanged (``token_arrays``).
"""

from __future__ import annotations

from typing import Any

from propylon.errors import InvalidRequest
from propylon.tokens import TokenCounter

MAX_INPUTS = 2048
TOKEN_ENCODING = "cl100k_base"  # what OpenAI's embeddings models, and so their clients, use

_SHAPE = "`input` must be a string, an array of strings, a token array or an array of them."


def embedding_texts(value: Any) -> list[str]:
    """The texts to embed; token arrays decoded. Raises ``InvalidRequest`` naming the item."""
    items = _items(value)
    texts: list[str] = []
    for index, item in enumerate(items):
        param = f"input[{index}]" if isinstance(value, list) else "input"
        if isinstance(item, str):
            if not item:
                raise InvalidRequest("`input` must not contain empty strings.", param=param)
            texts.append(item)
        elif _is_tokens(item):
            try:
                texts.append(TokenCounter().decode(item, TOKEN_ENCODING))
            except ValueError as exc:
                raise InvalidRequest(f"`{param}`: {exc}", param=param) from None
        else:
            raise InvalidRequest(_SHAPE, param=param)
    return texts


def token_arrays(value: Any) -> list[list[int]] | None:
    """The request's token arrays, to relay as they are; ``None`` when it holds text."""
    if _is_tokens(value):
        return [list(value)]
    if isinstance(value, list) and value and all(_is_tokens(item) for item in value):
        return [list(item) for item in value]
    return None


def _items(value: Any) -> list[Any]:
    if isinstance(value, str) or _is_tokens(value):
        return [value]
    if not isinstance(value, list) or not value:
        raise InvalidRequest("`input` is required. " + _SHAPE, param="input")
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(f"`input` holds more than {MAX_INPUTS} items.", param="input")
    return value


def _is_tokens(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )
