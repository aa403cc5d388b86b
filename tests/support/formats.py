"""Real files of the formats beyond PDF and DOCX: the builders ``propylon eval ingestion``
uses too (``propylon.rag.sample_documents``)."""

from propylon.rag.sample_documents import email, epub, mbox, odt, presentation, workbook

__all__ = ["email", "epub", "mbox", "odt", "presentation", "workbook"]
