"""Text read from page images by RapidOCR (PP-OCRv4 detection and recognition on ONNX
Runtime), whose models ship inside its wheel: nothing is downloaded, ever.

It runs in the document's parsing process (``isolated.extract``), so the process's memory
limit and the parse's time limit bound it; each image is also scaled down to at most
``ParseLimits.ocr_max_pixels`` before it is read, and at most ``ParseLimits.max_ocr_pages``
pages of one document are read at all. One ONNX thread: a worker's cores serve other jobs too.
The engine loads once per parsing process (about a second), on the first page that needs it.

The bundled recognition model (trained mostly on Chinese) often drops the space between
English words ("mastercountedseventeen"); runs of letters at least ``RESPLIT_MIN`` long are
split back into words by unigram frequency (wordninja) when every piece is a plausible word.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from PIL import Image

from propylon.rag.errors import DocumentLimitExceeded
from propylon.rag.parsing.document import ParseLimits

_PARAGRAPH_GAP = 1.2  # a vertical gap this many line heights wide starts a new paragraph
_MARGIN = 32  # pixels of white around an image before it is read
RESPLIT_MIN = 9  # letters in a run before it is tried as words without their spaces
_LETTER_RUN = re.compile(rf"[A-Za-z]{{{RESPLIT_MIN},}}")


@dataclass(frozen=True, slots=True)
class OcrText:
    """A page's text in reading order and the engine's mean confidence (0-1, by characters)."""

    text: str
    confidence: float | None


class PageReader:
    """Reads page images; counts them against ``limits.max_ocr_pages``."""

    def __init__(self, limits: ParseLimits) -> None:
        self._limits = limits
        self._engine: Any = None
        self.pages = 0

    def read(self, image: Image.Image) -> OcrText:
        self.pages += 1
        if self.pages > self._limits.max_ocr_pages:
            raise DocumentLimitExceeded(
                f"The document has more than {self._limits.max_ocr_pages:,} pages without a "
                "text layer (the limit of pages read by OCR)."
            )
        import numpy as np

        image = _padded(_bounded(image.convert("RGB"), self._limits.ocr_max_pixels))
        result, _ = self._load()(np.asarray(image))
        return _assemble(result or [])

    def _load(self) -> Any:
        if self._engine is None:
            from rapidocr_onnxruntime import RapidOCR

            self._engine = RapidOCR(
                intra_op_num_threads=1,
                inter_op_num_threads=1,
                det_limit_type="max",
                det_limit_side_len=2048,
            )
        return self._engine


def _bounded(image: Image.Image, max_pixels: int) -> Image.Image:
    pixels = image.width * image.height
    if pixels <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / pixels)
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _padded(image: Image.Image) -> Image.Image:
    """``image`` on a white margin: the detector misses text that runs into the edge."""
    canvas = Image.new("RGB", (image.width + 2 * _MARGIN, image.height + 2 * _MARGIN), "white")
    canvas.paste(image, (_MARGIN, _MARGIN))
    return canvas


def _assemble(boxes: list[Any]) -> OcrText:
    """Boxes ``[corners, text, score]`` as lines (boxes whose middles share a line joined left
    to right) and paragraphs (a blank line where the gap between lines is wide)."""
    if not boxes:
        return OcrText("", None)
    items = []
    for corners, text, score in boxes:
        ys = [point[1] for point in corners]
        items.append((min(ys), max(ys), min(point[0] for point in corners), str(text), score))
    items.sort(key=lambda item: (item[0] + item[1]) / 2)
    lines: list[list[tuple[float, float, float, str, float]]] = []
    for item in items:
        middle = (item[0] + item[1]) / 2
        if lines and lines[-1][0][0] <= middle <= lines[-1][0][1]:
            lines[-1].append(item)
        else:
            lines.append([item])
    out: list[str] = []
    previous_bottom: float | None = None
    for line in lines:
        top = min(item[0] for item in line)
        height = max(item[1] for item in line) - top
        if previous_bottom is not None and top - previous_bottom > _PARAGRAPH_GAP * height:
            out.append("")
        text = " ".join(item[3] for item in sorted(line, key=lambda item: item[2]))
        out.append(_LETTER_RUN.sub(_resplit, text))
        previous_bottom = max(item[1] for item in line)
    chars = sum(len(item[3]) for item in items)
    confidence = sum(len(item[3]) * float(item[4]) for item in items) / max(1, chars)
    return OcrText("\n".join(out), round(confidence, 4))


def _resplit(match: re.Match[str]) -> str:
    import wordninja

    pieces: list[str] = wordninja.split(match.group())
    if len(pieces) > 1 and all(len(p) >= 2 or p.lower() in ("a", "i") for p in pieces):
        return " ".join(pieces)
    return match.group()
