"""XML members of ZIP-based documents (EPUB, ODT) read with lxml, safely: no entities
resolved, no DTD loaded, nothing fetched from the network, no huge-tree mode."""

from __future__ import annotations

from lxml import etree

from propylon.rag.errors import CorruptDocument


def parse_xml(data: bytes, what: str) -> etree._Element:
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise CorruptDocument(f"{what} is damaged: {exc}.") from None
