"""A RAG answer's citations in the shapes other client APIs carry them.

Chat answers of ``rag/…`` models carry their citations in the ``propylon`` extension
(``propylon.citations``: source ``number``, ``quote``, ``document_id``, ``filename``,
``start``/``end`` offsets into the document…). The Responses API shows them as
``file_citation`` annotations on ``output_text`` (``index``: where in the answer the source's
``[N]`` marker ends, else the answer's end); the Messages API as Anthropic's ``char_location``
citations on the text block (``document_index``: the source's position among the answer's
sources, ``start/end_char_index``: offsets into that document, ``cited_text``: the quote, empty
when the answer only marked the source). The extension stays on the answer, with every field.
"""

from __future__ import annotations

from typing import Any

from propylon.gateway.protocol import JSONObject


def extension_citations(answer: JSONObject) -> list[JSONObject]:
    """The citations in an answer's (or chunk's) ``propylon`` extension; none if absent."""
    extension = answer.get("propylon")
    citations = extension.get("citations") if isinstance(extension, dict) else None
    if not isinstance(citations, list):
        return []
    return [c for c in citations if isinstance(c, dict) and isinstance(c.get("number"), int)]


def file_citations(citations: list[JSONObject], text: str) -> list[JSONObject]:
    """OpenAI Responses ``file_citation`` annotations of ``text``."""
    out: list[JSONObject] = []
    for citation in citations:
        marker = f"[{citation['number']}]"
        at = text.find(marker)
        out.append(
            {
                "type": "file_citation",
                "file_id": str(citation.get("document_id") or ""),
                "filename": _title(citation),
                "index": at + len(marker) if at >= 0 else len(text),
            }
        )
    return out


def char_locations(citations: list[JSONObject]) -> list[JSONObject]:
    """Anthropic ``char_location`` citations of a text block."""
    return [
        {
            "type": "char_location",
            "cited_text": str(citation.get("quote") or ""),
            "document_index": citation["number"] - 1,
            "document_title": _title(citation),
            "start_char_index": _int(citation.get("start")),
            "end_char_index": _int(citation.get("end")),
            "file_id": str(citation.get("document_id") or "") or None,
        }
        for citation in citations
    ]


def _title(citation: JSONObject) -> str:
    for key in ("filename", "external_id", "document_id"):
        value = citation.get(key)
        if isinstance(value, str) and value:
            return value
    return f"source {citation['number']}"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
