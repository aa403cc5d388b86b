"""Search, answers with citations and conversations over real HTTP, on documents ingested by
the in-process worker with the bundled MiniLM, answered by the local extractive model."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from propylon.gateway.call import CallInfo
from propylon.gateway.protocol import ChatService, ChatStream, JSONObject
from propylon.rag.answer import Answerer, AnswerOptions, AnswerRequest, ModelInfo
from propylon.rag.conversations import TRUNCATION_MARKER, ConversationStore, HistoryPlan
from propylon.rag.search import RerankParams
from propylon.services import Services
from propylon.tokens import TokenCounter
from tests.integration.rag.conftest import wait_for_job
from tests.support.databases import PostgresServer, create_database
from tests.support.job_rig import IN_PROCESS
from tests.support.servers import AppServer, serve_app
from tests.support.waiting import eventually

LOCAL_MODELS = [
    {
        "name": "local/all-MiniLM-L6-v2",
        "kind": "embeddings",
        "deployments": [{"provider": "local", "model": "all-MiniLM-L6-v2"}],
    },
    {
        "name": "local/extractive",
        "context_window": 8192,
        "deployments": [{"provider": "local", "model": "extractive"}],
    },
]

VOLCANOES = """# Geology

## Volcanoes

Mount Etna is an active stratovolcano on the east coast of Sicily. It is one of the most active
volcanoes in the world and erupts almost every year.

Lava from Etna has destroyed the town of Nicolosi several times. The volcano is about 3,357
metres high, and its height changes with each eruption.

## Glaciers

Glaciers form where snow accumulates faster than it melts. The Aletsch Glacier in Switzerland
is the largest glacier in the Alps, about 23 kilometres long.
"""

BAKING = """# Kitchen notes

Sourdough bread rises because of wild yeast and lactic acid bacteria in the starter. A
starter must be fed flour and water every day to stay active.

Bake the loaf at 250 degrees Celsius for twenty minutes with steam, then lower the oven to
220 degrees for another twenty-five minutes until the crust is dark brown.
"""

ROCKETS = """Rocket engines produce thrust by expelling hot exhaust gas through a nozzle. The
Saturn V first stage burned kerosene and liquid oxygen in five F-1 engines.
"""


@dataclass
class Rig:
    server: AppServer
    other_key: str
    collection_id: str
    documents: dict[str, str]  # name -> document id

    @property
    def services(self) -> Services:
        services: Services = self.server.app.state.services
        return services


@pytest.fixture(scope="module")
async def rig(pg_server: PostgresServer) -> AsyncIterator[Rig]:
    jobs = IN_PROCESS
    async with serve_app(
        database_url=await create_database(pg_server),
        models=LOCAL_MODELS,
        jobs=jobs,
        guard={"enabled": False},  # the guard has its own tests; here it would only cost time
    ) as server:
        other_key, _ = await server.app.state.services.access.create_key("other")
        async with aiohttp.ClientSession(server.v1 + "/", headers=server.headers) as http:
            async with http.post(
                "collections",
                json={"name": "kb", "chunking": {"max_tokens": 40, "overlap_tokens": 8}},
            ) as response:
                assert response.status == 201
                collection = await response.json()
            async with http.post("collections", json={"name": "space"}) as response:
                assert response.status == 201
            docs: dict[str, str] = {}
            for name, text, team, where in (
                ("volcanoes", VOLCANOES, "geo", "kb"),
                ("baking", BAKING, "food", "kb"),
                ("rockets", ROCKETS, "space", "space"),
            ):
                body = {"text": text, "filename": f"{name}.md", "metadata": {"team": team}}
                async with http.post(f"collections/{where}/documents", json=body) as response:
                    assert response.status == 202, await response.text()
                    accepted = await response.json()
                job = await wait_for_job(http, accepted["job_id"])
                assert job["state"] == "succeeded", job
                docs[name] = accepted["id"]
        yield Rig(server, other_key, collection["id"], docs)


@pytest.fixture
async def http(rig: Rig) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(rig.server.v1 + "/", headers=rig.server.headers) as session:
        yield session


async def search(
    http: aiohttp.ClientSession, path: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    async with http.post(path, json=body) as response:
        return response.status, await response.json()


async def document_text(rig: Rig, document_id: str) -> str:
    async with rig.services.database.connection() as conn:
        cur = await conn.execute("SELECT text FROM documents WHERE id = %s", (document_id,))
        row = await cur.fetchone()
    assert row is not None
    return str(row["text"])


@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
async def test_each_search_mode_finds_the_passage_with_its_place_in_the_document(
    rig: Rig, http: aiohttp.ClientSession, mode: str
) -> None:
    status, body = await search(
        http, "collections/kb/search", {"query": "How tall is Mount Etna?", "mode": mode}
    )
    assert status == 200, body
    assert body["mode"] == mode
    best = body["data"][0]
    assert best["document_id"] == rig.documents["volcanoes"]
    assert "Etna" in best["text"]
    text = await document_text(rig, best["document_id"])
    assert text[best["char_start"] : best["char_end"]] == best["text"]
    assert best["heading_path"][-1] == "Volcanoes"
    assert best["page"] is None or best["page"] >= 1
    assert "risk_score" in best
    scores = [hit["score"] for hit in body["data"]]
    assert scores == sorted(scores, reverse=True)
    if mode == "hybrid":
        assert best["scores"]["dense"] is not None and best["scores"]["keyword"] is not None


async def test_dense_search_finds_meaning_without_shared_words(
    rig: Rig, http: aiohttp.ClientSession
) -> None:
    status, body = await search(
        http,
        "collections/kb/search",
        {"query": "fermenting dough with a culture", "mode": "dense", "top_k": 1},
    )
    assert status == 200
    assert [hit["document_id"] for hit in body["data"]] == [rig.documents["baking"]]


async def test_keyword_search_with_no_matching_term_finds_nothing(
    http: aiohttp.ClientSession,
) -> None:
    status, body = await search(
        http, "collections/kb/search", {"query": "xylophone", "mode": "keyword"}
    )
    assert status == 200 and body["data"] == []


@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
async def test_a_metadata_filter_keeps_only_matching_documents(
    rig: Rig, http: aiohttp.ClientSession, mode: str
) -> None:
    status, body = await search(
        http,
        "collections/kb/search",
        {"query": "Etna volcano bread oven", "mode": mode, "filter": {"team": "food"}},
    )
    assert status == 200
    assert body["data"]
    assert {hit["document_id"] for hit in body["data"]} == {rig.documents["baking"]}
    assert all(hit["metadata"] == {"team": "food"} for hit in body["data"])


async def test_top_k_limits_the_results(http: aiohttp.ClientSession) -> None:
    status, body = await search(http, "collections/kb/search", {"query": "the", "top_k": 2})
    assert status == 200 and len(body["data"]) <= 2


async def test_tenant_wide_search_spans_the_chosen_collections(
    rig: Rig, http: aiohttp.ClientSession
) -> None:
    status, body = await search(
        http, "search", {"collections": ["kb", "space"], "query": "rocket engine thrust"}
    )
    assert status == 200
    assert body["data"][0]["document_id"] == rig.documents["rockets"]
    status, body = await search(
        http, "search", {"collections": ["kb"], "query": "rocket engine thrust"}
    )
    assert rig.documents["rockets"] not in {hit["document_id"] for hit in body["data"]}


async def test_a_reranker_reorders_the_candidates_and_a_failing_one_is_skipped(
    rig: Rig, http: aiohttp.ClientSession
) -> None:
    query = {"query": "How tall is Mount Etna?", "mode": "hybrid", "top_k": 3}
    search_service = rig.services.search
    try:
        search_service.rerank = RerankParams("local/minilm-rerank", candidates=10)
        status, body = await search(http, "collections/kb/search", query)
        assert status == 200, body
        hits = body["data"]
        assert len(hits) == 3
        assert hits[0]["document_id"] == rig.documents["volcanoes"]
        assert all(hit["scores"]["rerank"] == hit["score"] for hit in hits)
        scores = [hit["score"] for hit in hits]
        assert scores == sorted(scores, reverse=True)

        search_service.rerank = RerankParams("no-such-reranker", candidates=10)
        status, body = await search(http, "collections/kb/search", query)
        assert status == 200, body  # the second stage failed; the first stage's order stands
        assert body["data"][0]["document_id"] == rig.documents["volcanoes"]
        assert all(hit["scores"]["rerank"] is None for hit in body["data"])
    finally:
        search_service.rerank = None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"query": ""}, "query"),
        ({"query": "x", "mode": "fuzzy"}, "mode"),
        ({"query": "x", "top_k": 0}, "top_k"),
        ({"query": "x", "filter": [1]}, "filter"),
    ],
)
async def test_a_bad_search_request_is_a_400_naming_the_field(
    http: aiohttp.ClientSession, body: dict[str, Any], param: str
) -> None:
    status, error = await search(http, "collections/kb/search", body)
    assert status == 400
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["param"] == param


async def test_another_tenants_collection_is_404_everywhere(rig: Rig) -> None:
    headers = {"Authorization": f"Bearer {rig.other_key}"}
    async with aiohttp.ClientSession(rig.server.v1 + "/", headers=headers) as other:
        for path, body in (
            ("collections/kb/search", {"query": "Etna"}),
            (f"collections/{rig.collection_id}/search", {"query": "Etna"}),
            ("search", {"collections": [rig.collection_id], "query": "Etna"}),
            (f"collections/{rig.collection_id}/answer", {"question": "How tall is Etna?"}),
        ):
            status, error = await search(other, path, body)
            assert status == 404, (path, error)
            assert error["error"]["code"] == "not_found" or error["error"]["type"]
        sdk = openai.AsyncOpenAI(base_url=rig.server.v1, api_key=rig.other_key, max_retries=0)
        async with sdk:
            with pytest.raises(openai.NotFoundError):
                await sdk.chat.completions.create(
                    model=f"rag/{rig.collection_id}",
                    messages=[{"role": "user", "content": "How tall is Etna?"}],
                )


async def assert_citations_point_at_quotes(rig: Rig, citations: list[dict[str, Any]]) -> None:
    assert citations
    for citation in citations:
        text = await document_text(rig, citation["document_id"])
        assert citation["quote"]
        assert text[citation["start"] : citation["end"]] == citation["quote"]
        assert citation["chunk_id"] in citation["chunk_ids"]


async def test_an_answer_cites_sentences_at_their_offsets_in_the_document(
    rig: Rig, http: aiohttp.ClientSession
) -> None:
    status, body = await search(
        http, "collections/kb/answer", {"question": "How high is the volcano Etna?"}
    )
    assert status == 200, body
    assert body["object"] == "rag.answer"
    assert "3,357" in body["answer"] and "[1]" in body["answer"]
    await assert_citations_point_at_quotes(rig, body["citations"])
    assert body["citations"][0]["document_id"] == rig.documents["volcanoes"]
    usage = body["usage"]
    assert usage["context_tokens"] > 0 and usage["question_tokens"] > 0
    assert usage["history_tokens"] == 0


async def test_the_openai_sdk_gets_an_answer_with_citations_from_a_rag_model(
    rig: Rig,
) -> None:
    async with openai.AsyncOpenAI(
        base_url=rig.server.v1, api_key=rig.server.api_key, max_retries=0
    ) as sdk:
        reply = await sdk.chat.completions.create(
            model="rag/kb",
            messages=[{"role": "user", "content": "How long is the Aletsch Glacier?"}],
        )
        assert reply.model == "rag/kb"
        assert "23 kilometres" in (reply.choices[0].message.content or "")
        extension = (reply.model_extra or {})["propylon"]
        await assert_citations_point_at_quotes(rig, extension["citations"])

        stream = await sdk.chat.completions.create(
            model=f"rag/{rig.collection_id}",
            messages=[{"role": "user", "content": "How long is the Aletsch Glacier?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        content, citations = "", []
        async for chunk in stream:
            assert chunk.model == f"rag/{rig.collection_id}"
            if chunk.choices and chunk.choices[0].delta.content:
                content += chunk.choices[0].delta.content
            if chunk.choices and chunk.choices[0].finish_reason:
                citations = (chunk.model_extra or {})["propylon"]["citations"]
        assert "23 kilometres" in content
        assert chunk.usage is not None and chunk.usage.prompt_tokens > 0
        await assert_citations_point_at_quotes(rig, citations)


async def test_other_models_pass_through_the_rag_layer(rig: Rig) -> None:
    async with openai.AsyncOpenAI(
        base_url=rig.server.v1, api_key=rig.server.api_key, max_retries=0
    ) as sdk:
        reply = await sdk.chat.completions.create(
            model="local/extractive",
            messages=[
                {"role": "system", "content": "The sky is blue."},
                {"role": "user", "content": "What colour is the sky?"},
            ],
        )
        assert reply.model == "local/extractive"
        with pytest.raises(openai.NotFoundError):
            await sdk.chat.completions.create(
                model="rag/no-such-collection", messages=[{"role": "user", "content": "hi"}]
            )
        # A NUL in the collection's name cannot be looked up in PostgreSQL: a 400 naming
        # `model` (it was a 500).
        with pytest.raises(openai.BadRequestError) as refused:
            await sdk.chat.completions.create(
                model="rag/k\x00b", messages=[{"role": "user", "content": "hi"}]
            )
        assert refused.value.body["param"] == "model"  # type: ignore[index]
        assert refused.value.body["code"] == "unstorable_text"  # type: ignore[index]


class Recording:
    """A chat service that records every request it forwards."""

    def __init__(self, inner: ChatService) -> None:
        self.inner = inner
        self.requests: list[JSONObject] = []

    async def complete(self, request: JSONObject, call: CallInfo | None = None) -> JSONObject:
        self.requests.append(request)
        return await self.inner.complete(request, call)

    async def stream(self, request: JSONObject, call: CallInfo | None = None) -> ChatStream:
        self.requests.append(request)
        return await self.inner.stream(request, call)


async def test_a_long_conversation_stays_inside_the_window_and_keeps_the_latest_turns(
    rig: Rig, http: aiohttp.ClientSession
) -> None:
    window = 900
    services = rig.services
    recording = Recording(services.chat)
    answerer = Answerer(
        services.database,
        services.search,
        recording,
        ConversationStore(services.database),
        TokenCounter(),
        lambda name: ModelInfo(name, window, "extractive", local=True),
        AnswerOptions(answer_max_tokens=128, history_share=0.4),
    )
    principal = await services.keys.authenticate(rig.server.api_key)
    conversation = str(uuid.uuid4())
    counter = TokenCounter()
    questions = [
        f"Question number {n}: "
        + "tell me more about volcanoes and glaciers please " * 6
        + "How high is Etna?"
        for n in range(14)
    ]
    answers: list[str] = []
    for n, question in enumerate(questions):
        result = await answerer.answer(
            principal,
            AnswerRequest("kb", question, conversation_id=conversation, model="local/extractive"),
        )
        answers.append(result["answer"])
        sent = recording.requests[-1]
        prompt = counter.count_messages(sent["messages"], "extractive")
        assert prompt + sent["max_tokens"] <= window, (n, prompt)
        assert result["usage"]["prompt_tokens_planned"] == prompt
        history = sent["messages"][1:-1]
        if n >= 1:  # the latest exchange is always there verbatim
            assert history[-2:] == [
                {"role": "user", "content": questions[n - 1]},
                {"role": "assistant", "content": answers[n - 1]},
            ]
        assert sent["messages"][-1]["content"].endswith(question)
        usage = result["usage"]
        assert usage["history_tokens"] >= 0 and usage["context_tokens"] > 0
    assert usage["history"]["compacted_turns"] > 0
    assert usage["history"]["compaction"] == "truncated"
    summary = history[0]
    assert summary["role"] == "system"
    assert TRUNCATION_MARKER.split("{")[0] in summary["content"]
    # The conversation is the tenant's: another tenant cannot use or delete it.
    headers = {"Authorization": f"Bearer {rig.other_key}"}
    async with (
        aiohttp.ClientSession(rig.server.v1 + "/", headers=headers) as other,
        other.delete(f"conversations/{conversation}") as response,
    ):
        assert response.status == 404
    async with http.delete(f"conversations/{conversation}") as response:
        assert response.status == 200


async def test_answers_over_http_keep_a_server_side_conversation(
    http: aiohttp.ClientSession,
) -> None:
    # "new" starts a conversation; its id comes back to continue it.
    conversation = "new"
    for question in ("How high is Etna?", "And how long is the Aletsch Glacier?"):
        status, body = await search(
            http, "collections/kb/answer", {"question": question, "conversation_id": conversation}
        )
        assert status == 200, body
        assert str(uuid.UUID(body["conversation_id"])) == body["conversation_id"]
        conversation = body["conversation_id"]
    assert body["usage"]["history_tokens"] > 0
    assert body["usage"]["history"]["verbatim_turns"] == 2
    status, error = await search(
        http, "collections/kb/answer", {"question": "x", "conversation_id": "not-a-uuid"}
    )
    assert status == 400 and error["error"]["param"] == "conversation_id"
    assert '"new"' in error["error"]["message"]


async def test_a_nul_in_a_rag_chat_is_a_400_naming_it_and_a_model_answer_holding_one_is_kept(
    rig: Rig, http: aiohttp.ClientSession
) -> None:
    """Chat bodies are not checked at the edge (they go upstream as sent), but a ``rag/…``
    question is searched in PostgreSQL: a NUL there (or in the ``rag`` filter) was a 500; now
    a 400 naming it, as ``/answer`` answers. A model's answer is kept whatever it holds: the
    conversation stores its NUL escaped, and goes on."""
    body: dict[str, Any] = {
        "model": "rag/kb",
        "messages": [{"role": "user", "content": "How high is Etna?\x00"}],
    }
    status, error = await search(http, "chat/completions", body)
    assert status == 400, error
    assert (error["error"]["code"], error["error"]["param"]) == (
        "unstorable_text",
        "messages[0].content",
    )
    body = {
        "model": "rag/kb",
        "messages": [{"role": "user", "content": "How high is Etna?"}],
        "rag": {"filter": {"k": "\x00"}},
    }
    status, error = await search(http, "chat/completions", body)
    assert status == 400, error
    assert error["error"]["param"] == "rag.filter.k"

    store = ConversationStore(rig.services.database)
    principal = await rig.services.keys.authenticate(rig.server.api_key)
    conversation_id = str(uuid.uuid4())
    opened = await store.open(principal.tenant_id, conversation_id, rig.collection_id)
    plan = HistoryPlan(None, None, 0, [], 0, 0)
    await store.record(opened, "Etna?", "3,357\x00 m", [{"quote": "a\x00b"}], plan)
    kept = await store.open(principal.tenant_id, conversation_id, rig.collection_id)
    assert [t.content for t in kept.turns] == ["Etna?", "3,357\\u0000 m"]


async def test_a_conversation_deleted_during_its_answer_stays_deleted(
    rig: Rig, http: aiohttp.ClientSession
) -> None:
    """The answer is made from the conversation as it was opened; its tenant deletes the
    conversation before the exchange is recorded: nothing is recorded (no conversation
    row comes back to life, no 500 from the foreign key)."""
    store = ConversationStore(rig.services.database)
    principal = await rig.services.keys.authenticate(rig.server.api_key)
    conversation_id = str(uuid.uuid4())
    opened = await store.open(principal.tenant_id, conversation_id, rig.collection_id)
    async with http.delete(f"conversations/{conversation_id}") as response:
        assert response.status == 200
    plan = HistoryPlan(None, None, 0, [], 0, 0)
    await store.record(opened, "Etna?", "3,357 m", [], plan)  # raised ForeignKeyViolation
    async with http.delete(f"conversations/{conversation_id}") as response:
        assert response.status == 404  # still deleted
    async with http.delete("conversations/new") as response:
        assert response.status == 404  # "new" names no conversation (not a random id)
        assert "`new`" in (await response.json())["error"]["message"]


async def test_a_key_without_the_rag_feature_is_refused_with_403(rig: Rig) -> None:
    key, _ = await rig.services.access.create_key("test", features=["chat"])
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(rig.server.v1 + "/", headers=headers) as chat_only:
        status, error = await search(chat_only, "collections/kb/search", {"query": "Etna"})
        assert status == 403 and error["error"]["type"]
    async with openai.AsyncOpenAI(base_url=rig.server.v1, api_key=key, max_retries=0) as sdk:
        with pytest.raises(openai.PermissionDeniedError):
            await sdk.chat.completions.create(
                model="rag/kb", messages=[{"role": "user", "content": "How tall is Etna?"}]
            )


@pytest.mark.parametrize(
    ("model", "messages", "param"),
    [
        ("rag/", [{"role": "user", "content": "hi"}], "model"),
        ("rag/kb", [{"role": "system", "content": "no question here"}], "messages"),
    ],
)
async def test_a_bad_rag_chat_request_is_a_400(
    rig: Rig, model: str, messages: list[dict[str, str]], param: str
) -> None:
    async with openai.AsyncOpenAI(
        base_url=rig.server.v1, api_key=rig.server.api_key, max_retries=0
    ) as sdk:
        with pytest.raises(openai.BadRequestError) as caught:
            await sdk.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
    body = caught.value.body
    assert isinstance(body, dict) and body.get("param") == param


async def test_a_rag_chat_keeps_to_max_tokens_and_refuses_what_it_cannot_give(rig: Rig) -> None:
    """`max_tokens: 3` was answered with 21 tokens, `n: 2` with one choice, and a JSON
    `response_format` with prose, all silently."""
    question: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "How long is the Aletsch Glacier?"}
    ]
    async with openai.AsyncOpenAI(
        base_url=rig.server.v1, api_key=rig.server.api_key, max_retries=0
    ) as sdk:
        reply = await sdk.chat.completions.create(model="rag/kb", messages=question, max_tokens=3)
        assert reply.usage is not None and reply.usage.completion_tokens <= 3, reply.usage
        assert reply.choices[0].finish_reason == "length", reply
        for refused, param in (
            ({"n": 2}, "n"),
            ({"response_format": {"type": "json_object"}}, "response_format"),
        ):
            with pytest.raises(openai.BadRequestError) as caught:
                await sdk.chat.completions.create(
                    model="rag/kb", messages=question, extra_body=refused
                )
            body = caught.value.body
            assert isinstance(body, dict) and body.get("param") == param, body


async def test_rag_models_answer_over_the_responses_and_messages_apis_too(rig: Rig) -> None:
    question = "How long is the Aletsch Glacier?"
    async with openai.AsyncOpenAI(
        base_url=rig.server.v1, api_key=rig.server.api_key, max_retries=0
    ) as sdk:
        response = await sdk.responses.create(model="rag/kb", input=question)
        assert "23 kilometres" in response.output_text
        await assert_citations_point_at_quotes(
            rig, (response.model_extra or {})["propylon"]["citations"]
        )
    async with anthropic.AsyncAnthropic(
        base_url=rig.server.url, api_key=rig.server.api_key, max_retries=0
    ) as claude:
        message = await claude.messages.create(
            model="rag/kb", max_tokens=200, messages=[{"role": "user", "content": question}]
        )
        assert message.content[0].type == "text"
        assert "23 kilometres" in message.content[0].text


async def test_a_rag_answer_is_one_request_with_its_inner_calls_under_it(
    rig: Rig, http: aiohttp.ClientSession
) -> None:
    """The explorer's trace of a RAG answer: the user's request, with the calls Propylon made
    for it (the question's embedding for retrieval, the model's answer) as its children, not
    as requests of their own."""
    async with http.post(
        "chat/completions",
        json={"model": "rag/kb", "messages": [{"role": "user", "content": "How tall is Etna?"}]},
    ) as response:
        assert response.status == 200
        request_id = response.headers["x-request-id"]

    async def detail() -> dict[str, Any] | None:
        async with http.get(f"logs/{request_id}") as reply:
            if reply.status == 404:
                return None
            body: dict[str, Any] = await reply.json()
            return body if body["children"] else None

    shown = await eventually(detail, "the RAG answer's record and its inner calls")
    assert shown["origin"] == "user" and shown["endpoint"] == "chat"
    children = shown["children"]
    assert {c["endpoint"] for c in children} >= {"embeddings"}, children
    async with http.get(f"logs?origin=user&request_id={children[0]['request_id']}") as reply:
        assert (await reply.json())["data"] == [], "an inner call is not a user request"


def _annotations(response: Any) -> list[dict[str, Any]]:
    """The annotations of a response's first output text, as plain objects."""
    part = response.output[0].content[0]
    assert part.type == "output_text"
    return [annotation.model_dump() for annotation in part.annotations]


async def test_responses_carry_rag_citations_as_file_citation_annotations(rig: Rig) -> None:
    question = "How long is the Aletsch Glacier?"
    async with openai.AsyncOpenAI(
        base_url=rig.server.v1, api_key=rig.server.api_key, max_retries=0
    ) as sdk:
        response = await sdk.responses.create(model="rag/kb", input=question)
        annotations = _annotations(response)
        cited = (response.model_extra or {})["propylon"]["citations"]
        assert [a["file_id"] for a in annotations] == [c["document_id"] for c in cited]
        first = annotations[0]
        assert first["type"] == "file_citation"
        assert first["filename"] == "volcanoes.md"
        assert response.output_text[: first["index"]].endswith("[1]")

        added: list[dict[str, Any]] = []
        text_done_after_annotations = False
        async with sdk.responses.stream(model="rag/kb", input=question) as stream:
            async for event in stream:
                if event.type == "response.output_text.annotation.added":
                    assert event.annotation_index == len(added)
                    assert event.annotation is not None
                    added.append(event.annotation.model_dump())
                elif event.type == "response.output_text.done":
                    text_done_after_annotations = bool(added)
            final = await stream.get_final_response()
    assert text_done_after_annotations
    assert added == annotations
    assert _annotations(final) == annotations


async def test_messages_carry_rag_citations_as_char_locations(rig: Rig) -> None:
    question = "How long is the Aletsch Glacier?"
    async with anthropic.AsyncAnthropic(
        base_url=rig.server.url, api_key=rig.server.api_key, max_retries=0
    ) as claude:
        message = await claude.messages.create(
            model="rag/kb", max_tokens=200, messages=[{"role": "user", "content": question}]
        )
        block = message.content[0]
        assert block.type == "text" and block.citations
        citation = block.citations[0]
        assert citation.type == "char_location"
        assert citation.document_title == "volcanoes.md"
        document = await document_text(rig, rig.documents["volcanoes"])
        located = document[citation.start_char_index : citation.end_char_index]
        assert located == citation.cited_text and "23 kilometres" in located

        deltas: list[dict[str, Any]] = []
        async with claude.messages.stream(
            model="rag/kb", max_tokens=200, messages=[{"role": "user", "content": question}]
        ) as stream:
            async for event in stream:
                if event.type == "content_block_delta" and event.delta.type == "citations_delta":
                    deltas.append(event.delta.citation.model_dump())
            streamed = await stream.get_final_message()
    assert deltas == [c.model_dump() for c in block.citations]
    first = streamed.content[0]
    assert first.type == "text" and first.citations == block.citations
