"""``local/extractive``: the chat model that works with no API key and no network.

It is not a generative model and never pretends to be one. It answers from the context that
comes with the request, quoting verbatim the sentences most relevant to the last user
question, each followed by the number of its source (``… sentence. [3]``). With no context it
says that no generative model is configured.

Where the context is found:

* Labelled sources, the way RAG prompts carry them: ``<source id="3" …>text</source>`` blocks
  (attributes optional; a block without an id gets the next free number) and paragraphs
  starting with ``[3]`` (a source runs to the next ``[n]`` line or a blank line). When any
  message carries labelled sources, only they are context; the text around them is
  instructions.
* Otherwise the paragraphs of the system, developer, tool and earlier user messages, numbered
  1..n in order. Assistant messages are never context: quoting the model's own earlier
  answers back would be circular.
* A system or developer message whose instructions (its text outside labelled sources) say it
  is secret or confidential (or forbid revealing it) is never context, labelled sources in it
  included: asked "what is the password?", the model must not quote it.

The question is the last user message. When it carries sources too, or several paragraphs,
the question is the text after ``Question:`` if there is one, else its last paragraph with a
question mark (or its last paragraph); in an unlabelled message the other paragraphs are
context.

Each citation in the ``propylon`` extension field gives the source number, the sentence, and
its character offsets in that source's text, where a source's text is its content with
surrounding whitespace stripped: ``source_text[start:end] == sentence``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from propylon.errors import InvalidRequest
from propylon.gateway.protocol import ChatStream, EmbeddingModel, JSONObject
from propylon.gateway.validation import one_choice
from propylon.guard.canary import strip_canaries
from propylon.local.sentences import RANKING, Ranking, relevance, split_sentences

_WORDS_PER_CHUNK = 4
_PIECE = re.compile(r"\S+\s*|\s+")
_LEAD_IN = "From the provided context:"

_SOURCE_BLOCK = re.compile(
    r"""<source\b((?:[^>"']|"[^"]*"|'[^']*')*)>(.*?)</source\s*>""", re.IGNORECASE | re.DOTALL
)
_SOURCE_ID = re.compile(r"""(?:^|\s)id\s*=\s*["']?(\d+)["']?(?=\s|$)""", re.IGNORECASE)
_SOURCE_LABEL = re.compile(r"^[ \t]*\[(\d{1,6})\][:.]?[ \t]*", re.MULTILINE)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_QUESTION_MARKER = re.compile(r"(?:^|(?<=\s))question[ \t]*:[ \t]*", re.IGNORECASE)
_HEADING = re.compile(r"[\w ]{0,40}:")  # "Context:" alone is not a source
_CONTEXT_ROLES = frozenset({"system", "developer", "user", "tool", "function"})
_INSTRUCTING_ROLES = frozenset({"system", "developer"})
# A sentence of a system prompt that tells the model what to do, rather than stating a fact.
_INSTRUCTION = re.compile(
    r"(?:you(?:'re|'ll)?|your|as an? (?:ai|assistant|language model)|(?:please\s+)?(?:answer|"
    r"respond|reply|always|never|do|don't|be|use|keep|act|provide|write|follow|only|cite|"
    r"ignore|avoid|make|help|assist|refuse|summari[sz]e|translate|format|return|output|think|"
    r"explain|include|stay|speak|talk|greet|ask|try|remember|note|consider))\b",
    re.IGNORECASE,
)
# A system prompt that asks to be kept from the user: none of it may be quoted.
_SECRET = re.compile(
    r"\b(?:secret|confidential|classified|internal[- ]only|"
    r"(?:never|not|don't|do not|must not|mustn't|cannot|can't)\s+(?:\w+\s+){0,3}?"
    r"(?:reveal|share|disclose|repeat|tell|divulge|leak|expose|print|show)|"
    r"(?:not|never) be (?:revealed|shared|disclosed|repeated))\b",
    re.IGNORECASE,
)
_ADDRESSED = re.compile(r"\b(?:assistant|chatbot|the user|user's|users)\b", re.IGNORECASE)

ANSWER_THRESHOLD = 0.32
"""The cosine similarity (all-MiniLM-L6-v2) a context sentence needs with the question before
it counts as answering it; below it for every sentence, the model says the sources do not
contain the answer. Chosen on a dev split (SciFact train claims with their abstracts vs
off-topic CLINC150/Banking77 questions) and reported on held-out data by `propylon eval
extractive` (docs/benchmarks.md, "Extractive answers"). It was 0.38 until sentences were
ranked in context and quoted from different sources first; the same dev rule now picks 0.32."""


@dataclass(frozen=True, slots=True)
class Source:
    """A numbered piece of context: its content with surrounding whitespace stripped."""

    number: int
    text: str
    instructions: bool = False  # from a system prompt: its imperative sentences are not facts


@dataclass(frozen=True, slots=True)
class Context:
    """What a request asks, what it offers to answer from, and all its messages' text."""

    question: str
    sources: list[Source]
    texts: list[str]


@dataclass(frozen=True, slots=True)
class Citation:
    """A quoted sentence: ``text == source_text[start:end]`` of source number ``source``."""

    source: int
    text: str
    start: int
    end: int

    def to_json(self) -> JSONObject:
        return {"source": self.source, "text": self.text, "start": self.start, "end": self.end}


@dataclass(frozen=True, slots=True)
class _Answer:
    content: str
    finish_reason: str
    citations: list[Citation]
    prompt_tokens: int
    completion_tokens: int

    def usage(self) -> JSONObject:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def _is_heading(text: str) -> bool:
    """A title line ("## Refunds", "Refunds"): it names a topic but answers nothing."""
    stripped = text.strip()
    if stripped.startswith("#"):
        return True
    return len(stripped.split()) <= 4 and stripped[-1:] not in (".", "!", "?", ":", ";")


def _is_instruction(sentence: str) -> bool:
    """An imperative or second-person sentence, or one about the assistant or the user."""
    return bool(_INSTRUCTION.match(sentence.lstrip()) or _ADDRESSED.search(sentence))


_LIST_ITEM = re.compile(r"\n[ \t]*(?:[-*•+]|\d{1,3}[.)])[ \t]+[^\n]*")


def _whole_list(source: Source, start: int, end: int) -> Citation:
    """The sentence ``source.text[start:end]``; when it introduces a list ("…:"), with the
    list's items, which are the answer it announces."""
    text = source.text
    if text[start:end].rstrip().endswith(":"):
        while item := _LIST_ITEM.match(text, end):
            end = item.end()
    return Citation(source.number, text[start:end], start, end)


def estimate_tokens(text: str) -> int:
    """About four characters per token: OpenAI's rule of thumb for English text."""
    return (len(text) + 3) // 4


class ExtractiveChatModel:
    """A ``ChatModel`` that quotes and cites the context sentences that answer the question.

    Only sentences relevant enough are candidates: with an ``embedder``, a cosine similarity
    to the question of at least ``answer_threshold``; without one (or when it fails), any
    sentence sharing a meaningful word with the question, a much weaker test. With none, the
    answer says the context does not contain the answer.
    Candidates are ranked by BM25 over the request's sentences; with an ``embedder``, by
    cosine similarity in the context of their neighbours and source (``relevance``). The
    quotes are the best candidate of each source in rank order, then the next best of any.
    Token usage comes from ``count_tokens``, else ``estimate_tokens``.
    """

    def __init__(
        self,
        embedder: EmbeddingModel | None = None,
        *,
        model_name: str = "local/extractive",
        max_sentences: int = 3,
        count_tokens: Callable[[str], int] | None = None,
        answer_threshold: float = ANSWER_THRESHOLD,
        ranking: Ranking = RANKING,
    ) -> None:
        if max_sentences < 1:
            raise ValueError("max_sentences must be at least 1")
        self._embedder = embedder
        self._model_name = model_name
        self._max_sentences = max_sentences
        self._count = count_tokens or estimate_tokens
        self._answer_threshold = answer_threshold
        self._ranking = ranking

    async def complete(self, request: JSONObject) -> JSONObject:
        answer = await self._answer(request)
        return {
            "id": _completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self._model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.content},
                    "logprobs": None,
                    "finish_reason": answer.finish_reason,
                }
            ],
            "usage": answer.usage(),
            "propylon": {"citations": [citation.to_json() for citation in answer.citations]},
        }

    async def stream(self, request: JSONObject) -> ChatStream:
        """The answer is complete before this returns, so every error is raised here."""
        include_usage = _include_usage(request)
        answer = await self._answer(request)
        return _replay(self._chunks(answer, include_usage=include_usage))

    async def _answer(self, request: JSONObject) -> _Answer:
        context = read_context(request)
        one_choice(request)  # one answer, the same each time
        limit = _max_tokens(request)
        stops = _stop_sequences(request)
        content, citations = await self._reply(context)
        finish_reason = "stop"
        for stop in stops:
            at = content.find(stop)
            if at != -1:
                content = content[:at]
        if limit is not None and self._count(content) > limit:
            content = self._truncate(content, limit)
            finish_reason = "length"
        kept = [citation for citation, end in citations if end <= len(content)]
        # OpenAI's chat format adds about 3 tokens per message and 3 to prime the reply.
        prompt_tokens = sum(self._count(text) + 3 for text in context.texts) + 3
        return _Answer(content, finish_reason, kept, prompt_tokens, self._count(content))

    async def _reply(self, context: Context) -> tuple[str, list[tuple[Citation, int]]]:
        """The answer text, and each citation with the offset where its ``[n]`` ends."""
        if not context.sources:
            return (
                f"{self._model_name} answers only from context supplied with the request "
                "(for example a RAG collection), and none was given. Configure a generative "
                "chat model in the model list to get generated answers.",
                [],
            )
        if not context.question:
            return (
                "There is no user question to answer. "
                f"{self._model_name} quotes the context sentences most relevant to the last "
                "user message.",
                [],
            )
        chosen = await self._select(context)
        if not chosen:
            return (
                "The provided context does not contain an answer to this question. "
                f"({self._model_name} only quotes context supplied with the request; configure "
                "a generative chat model in the model list to get generated answers.)",
                [],
            )
        content = _LEAD_IN + "\n"
        citations: list[tuple[Citation, int]] = []
        for citation in chosen:
            content += f"\n- {citation.text} [{citation.source}]"
            citations.append((citation, len(content)))
        return content, citations

    async def _select(self, context: Context) -> list[Citation]:
        candidates = [
            _whole_list(source, start, end)
            for source in context.sources
            for start, end in split_sentences(source.text)
            if not _is_heading(source.text[start:end])
            and not (source.instructions and _is_instruction(source.text[start:end]))
        ]
        texts = [candidate.text for candidate in candidates]
        ranked = await relevance(
            context.question,
            texts,
            self._embedder,
            sources=[candidate.source for candidate in candidates],
            ranking=self._ranking,
        )
        if ranked.similarity is not None:
            relevant = [value >= self._answer_threshold for value in ranked.similarity]
        else:
            relevant = [score > 0.0 for score in ranked.scores]
        order = [
            i
            for i in sorted(range(len(candidates)), key=lambda i: (-ranked.scores[i], i))
            if relevant[i]
        ]
        # Sources first, then sentences: the best sentence of each relevant source before a
        # second one of any source. Three quotes from the one source that happens to rank
        # first say little more than one, and miss the answer when that source is wrong.
        best_of_source: dict[int, int] = {}
        for i in order if self._ranking.each_source_first else ():
            best_of_source.setdefault(candidates[i].source, i)
        firsts = set(best_of_source.values())
        chosen: list[Citation] = []
        seen: set[str] = set()
        for i in [*best_of_source.values(), *(i for i in order if i not in firsts)]:
            if len(chosen) == self._max_sentences:
                break
            key = " ".join(candidates[i].text.split()).casefold()
            if key not in seen:
                seen.add(key)
                chosen.append(candidates[i])
        return chosen

    def _truncate(self, content: str, limit: int) -> str:
        """The longest prefix of whole words within ``limit`` tokens."""
        ends = [piece.end() for piece in _PIECE.finditer(content)]
        low, high = 0, len(ends)
        while low < high:
            middle = (low + high + 1) // 2
            if self._count(content[: ends[middle - 1]].rstrip()) <= limit:
                low = middle
            else:
                high = middle - 1
        return content[: ends[low - 1]].rstrip() if low else ""

    def _chunks(self, answer: _Answer, *, include_usage: bool) -> list[JSONObject]:
        stamp = {
            "id": _completion_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self._model_name,
        }

        def chunk(delta: JSONObject, finish_reason: str | None = None) -> JSONObject:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            body: JSONObject = {**stamp, "choices": [choice]}
            if include_usage:
                body["usage"] = None
            return body

        pieces = [piece.group() for piece in _PIECE.finditer(answer.content)]
        chunks = [chunk({"role": "assistant", "content": ""})]
        chunks += [
            chunk({"content": "".join(pieces[i : i + _WORDS_PER_CHUNK])})
            for i in range(0, len(pieces), _WORDS_PER_CHUNK)
        ]
        finish = chunk({}, answer.finish_reason)
        finish["propylon"] = {"citations": [citation.to_json() for citation in answer.citations]}
        chunks.append(finish)
        if include_usage:
            chunks.append({**stamp, "choices": [], "usage": answer.usage()})
        return chunks


async def _replay(chunks: list[JSONObject]) -> AsyncGenerator[JSONObject, None]:
    for chunk in chunks:
        yield chunk


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _max_tokens(request: JSONObject) -> int | None:
    for param in ("max_completion_tokens", "max_tokens"):
        value = request.get(param)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidRequest(f"{param} must be a positive integer", param=param)
        return value
    return None


def _stop_sequences(request: JSONObject) -> list[str]:
    stop = request.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
        raise InvalidRequest("stop must be a string or a list of strings", param="stop")
    return [item for item in stop if item]


def _include_usage(request: JSONObject) -> bool:
    options = request.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise InvalidRequest("stream_options must be an object", param="stream_options")
    return options.get("include_usage") is True


def read_context(request: JSONObject) -> Context:
    """The question and the numbered sources of a chat request (see the module docstring)."""
    read = _messages(request)
    messages = [
        (role, _unless_secret(text) if role in _INSTRUCTING_ROLES else text) for role, text in read
    ]
    users = [i for i, (role, _) in enumerate(messages) if role == "user"]
    final = messages[users[-1]][1] if users else ""
    earlier = [
        text
        for i, (role, text) in enumerate(messages)
        if role in _CONTEXT_ROLES and (not users or i != users[-1])
    ]
    labelled: list[tuple[int | None, str]] = []
    for text in earlier:
        labelled += _labelled(text)[0]
    final_labelled, outside = _labelled(final)
    labelled += final_labelled
    question, final_context = _split_question(outside)
    if labelled:
        sources = _numbered(labelled)
    else:
        earlier_roles = [
            role in _INSTRUCTING_ROLES
            for i, (role, _) in enumerate(messages)
            if role in _CONTEXT_ROLES and (not users or i != users[-1])
        ]
        paragraphs = [
            (instructing, p)
            for text, instructing in [
                *zip(earlier, earlier_roles, strict=True),
                (final_context, False),
            ]
            for p in _paragraphs(text)
        ]
        sources = [
            Source(number, text, instructions=instructing)
            for number, (instructing, text) in enumerate(paragraphs, 1)
        ]
    return Context(question, sources, [text for _, text in read])


def _unless_secret(text: str) -> str:
    """A system prompt without the guard's canary line, or nothing if it says it is secret.

    What it says of itself is in its instructions: the labelled sources it carries are data,
    and an abstract saying a study "did not show" an effect does not make a prompt secret."""
    text = strip_canaries(text)
    _, instructions = _labelled(text)
    return "" if _SECRET.search(instructions) else text


def _messages(request: Any) -> list[tuple[str, str]]:
    if not isinstance(request, dict):
        raise InvalidRequest("the request must be a JSON object")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list", param="messages")
    read: list[tuple[str, str]] = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest("each message must be an object with a role", param="messages")
        read.append((message["role"], _text(message.get("content"))))
    return read


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part.get("text") for part in content if isinstance(part, dict)]
        return "\n\n".join(part for part in parts if isinstance(part, str))
    raise InvalidRequest("message content must be a string or a list of parts", param="messages")


# The datamark a RAG prompt may join source words with (``propylon.rag.prompt.Datamark``);
# one character for one space, so offsets into the unmarked text are offsets into the original.
_DATAMARK = "\u02c6"


def _labelled(text: str) -> tuple[list[tuple[int | None, str]], str]:
    """The labelled sources in ``text`` (number if given, raw text), and the text outside."""
    found: list[tuple[int | None, str]] = []
    outside: list[str] = []
    position = 0
    for block in _SOURCE_BLOCK.finditer(text):
        outside.append(text[position : block.start()])
        number = _SOURCE_ID.search(block.group(1))
        body = block.group(2).replace(_DATAMARK, " ")  # spotlighting marks words, not meaning
        found.append((int(number.group(1)) if number else None, body))
        position = block.end()
    outside.append(text[position:])
    rest = "\n\n".join(outside)
    outside = []
    position = 0
    labels = list(_SOURCE_LABEL.finditer(rest))
    for i, label in enumerate(labels):
        outside.append(rest[position : label.start()])
        limit = labels[i + 1].start() if i + 1 < len(labels) else len(rest)
        blank = _PARAGRAPH_BREAK.search(rest, label.end(), limit)
        position = blank.start() if blank else limit
        found.append((int(label.group(1)), rest[label.end() : position]))
    outside.append(rest[position:])
    return found, "".join(outside)


def _numbered(found: list[tuple[int | None, str]]) -> list[Source]:
    free = max((number for number, _ in found if number is not None), default=0) + 1
    sources: list[Source] = []
    for number, raw in found:
        text = raw.strip()
        if not text:
            continue
        if number is None:
            number, free = free, free + 1
        sources.append(Source(number, text))
    return sources


def _paragraphs(text: str) -> list[str]:
    paragraphs = (paragraph.strip() for paragraph in _PARAGRAPH_BREAK.split(text))
    return [p for p in paragraphs if p and not _HEADING.fullmatch(p)]


def _split_question(text: str) -> tuple[str, str]:
    """The question in the last user message's own text, and the rest of that text."""
    markers = list(_QUESTION_MARKER.finditer(text))
    if markers:
        return text[markers[-1].end() :].strip(), text[: markers[-1].start()]
    paragraphs = [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]
    if len(paragraphs) <= 1:
        return text.strip(), ""
    asked = [i for i, paragraph in enumerate(paragraphs) if "?" in paragraph]
    at = asked[-1] if asked else len(paragraphs) - 1
    return paragraphs[at], "\n\n".join(paragraphs[:at] + paragraphs[at + 1 :])


__all__ = [
    "Citation",
    "Context",
    "ExtractiveChatModel",
    "Source",
    "estimate_tokens",
    "read_context",
]
