"""E-mail: one message (.eml, RFC 5322) or a mailbox of them (.mbox), with the stdlib
``email`` package.

Each message is a page of its own ("message 2: Quarterly numbers"): its headers (From, To,
Cc, Date, Subject), then its body, the plain-text part if it has one, else its HTML part
through the HTML parser. Attachments in a format we read become child documents: the message
names each under an "Attachment: name" heading, and its bytes go back with the parse
(``Attachment``, located as "message 2, attachment plan.pdf") for the ingestion job to ingest
as documents of their own, each in its own sandboxed parse. At most ``max_pages`` of them per
document; mail attached to mail is not opened (no nesting without end).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser

from propylon.rag.errors import DocumentLimitExceeded, DocumentRejected
from propylon.rag.parsing.document import Attachment, Block, PageBreak, ParseLimits
from propylon.rag.parsing.html import parse_html
from propylon.rag.parsing.sniff import sniff
from propylon.rag.parsing.text import parse_text

_HEADERS = ("From", "To", "Cc", "Date", "Subject")
_MBOX_SEPARATOR = re.compile(rb"^From [^\n]*\n", re.M)
_QUOTED_FROM = re.compile(rb"^>(>*From )", re.M)
_LABEL_SUBJECT_CHARS = 60


Item = Block | PageBreak | Attachment


def parse_eml(data: bytes, limits: ParseLimits) -> Iterator[Item]:
    yield from _message(data, 1, 1, limits)


def parse_mbox(data: bytes, limits: ParseLimits) -> Iterator[Item]:
    messages = [m for m in _MBOX_SEPARATOR.split(data.replace(b"\r\n", b"\n")) if m.strip()]
    if len(messages) > limits.max_pages:
        raise DocumentLimitExceeded(
            f"The mailbox has {len(messages):,} messages; the limit is {limits.max_pages:,}."
        )
    for number, raw in enumerate(messages, start=1):
        yield from _message(_QUOTED_FROM.sub(rb"\1", raw), number, len(messages), limits)


def _message(raw: bytes, number: int, total: int, limits: ParseLimits) -> Iterator[Item]:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    subject = " ".join(str(message.get("Subject", "")).split())
    if len(subject) > _LABEL_SUBJECT_CHARS:
        subject = subject[: _LABEL_SUBJECT_CHARS - 1] + "…"
    yield PageBreak(number, total, label=f"message {number}: {subject}" if subject else None)
    yield Block("heading", subject or f"Message {number}", 1)
    headers = [f"{name}: {message[name]}" for name in _HEADERS if message.get(name)]
    if headers:
        yield Block("paragraph", "\n".join(headers))
    body = message.get_body(preferencelist=("plain", "html"))
    if body is not None:
        content = _bytes(body)
        if body.get_content_subtype() == "html":
            yield from (b for b in parse_html(content, limits) if isinstance(b, Block))
        else:
            yield from (b for b in parse_text(content, limits) if isinstance(b, Block))
    for attachment in message.iter_attachments():
        yield from _attachment(attachment, number)


def _attachment(part: MIMEPart, number: int) -> Iterator[Block | Attachment]:
    data = _bytes(part)
    name = " ".join((part.get_filename() or part.get_content_type()).split())[:200]
    try:
        kind = sniff(data, part.get_filename(), part.get_content_type())
    except DocumentRejected:
        return  # an archive, a format we do not read
    if not data or kind in ("eml", "mbox"):
        return
    yield Block("heading", f"Attachment: {name}", 2)
    yield Attachment(name, data, f"message {number}, attachment {name}")


def _bytes(part: MIMEPart) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""
