"""LangChain's OpenAI integration with its defaults: `OpenAIEmbeddings()` sends cl100k token
arrays, `ChatOpenAI` the chat format. Both work against Propylon unchanged."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

import httpx
import numpy as np
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import SecretStr

from propylon.testing import FakeUpstream
from tests.support.servers import AppServer, serve_app

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


@pytest.fixture(autouse=True)
def offline_tiktoken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tiktoken downloads its BPE file on first use; give it Propylon's vendored copy."""
    cache = tmp_path / "tiktoken"
    cache.mkdir()
    vendored = resources.files("propylon.tokens").joinpath("bpe", "cl100k_base.tiktoken")
    with resources.as_file(vendored) as source:
        shutil.copy(source, cache / hashlib.sha1(CL100K_URL.encode()).hexdigest())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """LangChain's clients share a process-wide connection pool unless given one; ours is
    closed with the test, before its server goes."""
    async with httpx.AsyncClient() as client:
        yield client


def embeddings_of(
    server: AppServer, model: str, http: httpx.AsyncClient, *, by_tokens: bool = True
) -> OpenAIEmbeddings:
    """LangChain's embeddings client on ``server``; ``by_tokens`` is its default."""
    return OpenAIEmbeddings(
        model=model,
        base_url=server.v1,
        api_key=SecretStr(server.api_key),
        http_async_client=http,
        check_embedding_ctx_length=by_tokens,
    )


@pytest.fixture
async def local(database_url: str) -> AsyncIterator[AppServer]:
    """Propylon with no configuration: the built-in local models."""
    async with serve_app(database_url=database_url) as server:
        yield server


async def test_openai_embeddings_with_defaults_embed_what_the_text_would(
    local: AppServer, http: httpx.AsyncClient
) -> None:
    embeddings = embeddings_of(local, "local/all-MiniLM-L6-v2", http)
    texts = ["Owls hunt at night.", "The warranty covers two years of defects."]
    # Sent as token arrays (check_embedding_ctx_length defaults to True), decoded with cl100k.
    from_tokens = await embeddings.aembed_documents(texts)
    as_text = embeddings_of(local, "local/all-MiniLM-L6-v2", http, by_tokens=False)
    from_text = await as_text.aembed_documents(texts)
    for a, b in zip(from_tokens, from_text, strict=True):
        assert len(a) == 384
        assert float(np.dot(a, b)) == pytest.approx(1.0, abs=1e-5)
    query = await embeddings.aembed_query("When do owls hunt?")
    assert float(np.dot(query, from_tokens[0])) > float(np.dot(query, from_tokens[1]))


async def test_chat_openai_answers_through_propylon(
    local: AppServer, http: httpx.AsyncClient
) -> None:
    chat = ChatOpenAI(
        model="local/extractive",
        base_url=local.v1,
        api_key=SecretStr(local.api_key),
        http_async_client=http,
    )
    reply = await chat.ainvoke(
        [
            SystemMessage("The museum opens at 9 am. Tickets cost 12 euros."),
            HumanMessage("How much do tickets cost?"),
        ]
    )
    assert "12 euros" in str(reply.content)
    streamed = "".join([str(c.content) async for c in chat.astream("How much do tickets cost?")])
    assert streamed  # no context in this one: the model says so, streamed


async def test_token_arrays_reach_an_openai_compatible_upstream_unchanged(
    gateway: AppServer, upstream: FakeUpstream, http: httpx.AsyncClient
) -> None:
    embeddings = embeddings_of(gateway, "embed-test", http)
    vectors = await embeddings.aembed_documents(["first text", "second text"])
    assert len(vectors) == 2
    sent = upstream.last_request("/v1/embeddings")
    assert sent is not None
    assert all(isinstance(item, list) for item in sent.body["input"])
    assert all(isinstance(token, int) for item in sent.body["input"] for token in item)
