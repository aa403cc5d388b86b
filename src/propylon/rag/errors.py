"""Why a document could not be ingested: each is a ``PropylonError`` that fails its job with a
reason the user can act on, and none is worth a retry (the same bytes fail the same way).

    InvalidRequest (400)
    └── DocumentRejected             document_rejected
        ├── UnsupportedDocument      unsupported_document
        ├── CorruptDocument          corrupt_document
        ├── EncryptedDocument        encrypted_document
        ├── EmptyDocument            empty_document
        └── DocumentLimitExceeded    document_limit_exceeded
"""

from __future__ import annotations

from propylon.errors import InvalidRequest


class DocumentRejected(InvalidRequest):
    default_code = "document_rejected"


class UnsupportedDocument(DocumentRejected):
    default_code = "unsupported_document"


class CorruptDocument(DocumentRejected):
    default_code = "corrupt_document"


class EncryptedDocument(DocumentRejected):
    default_code = "encrypted_document"


class EmptyDocument(DocumentRejected):
    default_code = "empty_document"


class DocumentLimitExceeded(DocumentRejected):
    """Too many pages, too large once decompressed, or too slow to parse."""

    default_code = "document_limit_exceeded"
