"""HTML with selectolax (Lexbor): headings, paragraphs, list items, code and tables (as
Markdown tables) in document order; scripts, styles and page chrome (nav, header, footer,
aside) dropped."""

from __future__ import annotations

from collections.abc import Iterator

from selectolax.lexbor import LexborHTMLParser, LexborNode

from propylon.rag.parsing.document import Block, PageBreak, ParseLimits
from propylon.rag.parsing.sniff import decode_text
from propylon.rag.parsing.table import markdown_table

_DROP = "script, style, noscript, template, nav, header, footer, aside, form, svg, iframe"
_BLOCKS = "h1, h2, h3, h4, h5, h6, p, li, pre, blockquote, table, dt, dd, figcaption, caption"


def parse_html(data: bytes, limits: ParseLimits) -> Iterator[Block | PageBreak]:
    tree = LexborHTMLParser(decode_text(data))
    for node in tree.css(_DROP):
        node.decompose()
    root = tree.body or tree.root
    if root is None:
        return
    blocks = root.css(_BLOCKS)
    if not blocks:
        yield Block("paragraph", root.text(separator=" "))
        return
    chosen = {node.mem_id for node in blocks}
    for node in blocks:
        if _inside_chosen(node, chosen):
            continue  # its text is part of the enclosing block's
        yield _block(node)


def _inside_chosen(node: LexborNode, chosen: set[int]) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.mem_id in chosen:
            return True
        parent = parent.parent
    return False


def _block(node: LexborNode) -> Block:
    tag = node.tag or ""
    if len(tag) == 2 and tag[0] == "h" and tag[1].isdigit():
        return Block("heading", node.text(separator=" "), int(tag[1]))
    if tag == "pre":
        return Block("code", node.text(separator=""))
    if tag == "table":
        rows = [[cell.text(separator=" ") for cell in row.css("th, td")] for row in node.css("tr")]
        return Block("table", markdown_table(rows))
    return Block("paragraph", " ".join(node.text(separator=" ").split()))
