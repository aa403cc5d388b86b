"""Scanned pages and images read by the bundled OCR engine, offline, in the parsing process:
the known text comes back, and the page says it was read by OCR and how surely. Images are
kept small: the engine's speed is proportional to pixels."""

from __future__ import annotations

import pytest

from propylon.rag.errors import DocumentLimitExceeded
from propylon.rag.parsing import ParseLimits, extract, sniff
from tests.support import documents

SENTENCE = "The harbour master counted seventeen lanterns at dawn."


def recall(expected: str, got: str) -> float:
    found = set(got.lower().split())
    words = expected.lower().split()
    return sum(word in found for word in words) / len(words)


async def test_a_scanned_pdf_page_is_read_by_ocr_and_marked_with_its_confidence() -> None:
    data = documents.scanned_pdf([[SENTENCE, "Nobody saw the ship leave."]], text_layer_first=True)
    parsed = await extract(data)
    assert parsed.page_count == 2
    assert "real text layer" in parsed.text
    assert recall(SENTENCE, parsed.text) >= 0.9
    assert parsed.page_ocr[0] is None  # the text-layer page was not read by OCR
    confidence = parsed.ocr_confidence(2, 2)
    assert confidence is not None and 0.8 <= confidence <= 1.0


async def test_an_image_is_a_document_read_by_ocr() -> None:
    data = documents.png([SENTENCE])
    assert sniff(data, filename="scan.pdf") == "image"
    parsed = await extract(data)
    assert parsed.media_type == "image/png"
    assert recall(SENTENCE, parsed.text) >= 0.9
    assert parsed.ocr_confidence(1, 1) is not None


async def test_ocr_pages_beyond_the_limit_fail_the_document_with_the_reason() -> None:
    data = documents.scanned_pdf([["one"], ["two"]])
    with pytest.raises(DocumentLimitExceeded, match="OCR"):
        await extract(data, limits=ParseLimits(max_ocr_pages=1))
