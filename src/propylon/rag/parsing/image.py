"""Images as documents (PNG, JPEG, TIFF): each image — each frame of a multi-page TIFF — is a
page read by OCR (``ocr``), marked with the engine's confidence. Pillow reads only the header
before the pixel count is checked, so a tiny file claiming a huge canvas is refused unread."""

from __future__ import annotations

import io
from collections.abc import Iterator

from PIL import Image, ImageSequence, UnidentifiedImageError

from propylon.rag.errors import CorruptDocument, DocumentLimitExceeded
from propylon.rag.parsing.document import Block, PageBreak, ParseLimits
from propylon.rag.parsing.ocr import PageReader

MAX_PIXELS = 100_000_000  # one frame's canvas; it is scaled down to ocr_max_pixels to be read


def parse_image(data: bytes, limits: ParseLimits) -> Iterator[Block | PageBreak]:
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise CorruptDocument(f"The image is damaged and cannot be read: {exc}.") from None
    if image.width * image.height > MAX_PIXELS:
        raise DocumentLimitExceeded(
            f"The image has {image.width}x{image.height} pixels; the limit is {MAX_PIXELS:,}."
        )
    frames = getattr(image, "n_frames", 1)
    if frames > limits.max_pages:
        raise DocumentLimitExceeded(
            f"The image has {frames:,} pages; the limit is {limits.max_pages:,}."
        )
    reader = PageReader(limits)
    try:
        for number, frame in enumerate(ImageSequence.Iterator(image), start=1):
            read = reader.read(frame)
            yield PageBreak(number, frames, ocr_confidence=read.confidence)
            for paragraph in read.text.split("\n\n"):
                yield Block("paragraph", paragraph)
    except OSError as exc:  # a truncated or damaged frame
        raise CorruptDocument(f"The image is damaged and cannot be read: {exc}.") from None
