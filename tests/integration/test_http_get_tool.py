"""The `http_get` tool tells the model what the site answered, not only its body."""

from __future__ import annotations

from typing import cast

from propylon.principal import Principal
from propylon.runs.tools import BUILT_IN, ToolContext
from tests.support.site import static_site


def context(host: str) -> ToolContext:
    return ToolContext(
        principal=cast(Principal, None),  # http_get reads no identity
        chat=cast(object, None),  # type: ignore[arg-type]
        search=None,
        http_hosts=frozenset({host}),
        run_id="r",
    )


async def test_a_missing_page_or_a_redirect_is_said_to_the_model() -> None:
    """A 404 page came back as plain content (read as an answer), a redirect as nothing."""
    async with static_site({"/ok": b"<p>The pump ships in a blue box.</p>"}) as site:
        ctx = context(site.url.removeprefix("http://"))
        fetch = BUILT_IN["http_get"].run
        found = await fetch(ctx, {"url": f"{site.url}/ok"})
        assert found.content.startswith("<p>The pump") and found.data["status"] == 200
        missing = await fetch(ctx, {"url": f"{site.url}/gone"})
        assert missing.content.startswith("HTTP 404 Not Found"), missing.content
        assert missing.data["status"] == 404
