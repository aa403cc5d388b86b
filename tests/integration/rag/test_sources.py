"""Sources that keep a collection in sync, against real servers on loopback: a web site the
test serves and edits, a real directory, and (when installed) a real S3-compatible server."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from propylon.errors import InvalidRequest, NotFound
from propylon.jobs.handler import JobContext
from propylon.rag.sources.connector import SourceUnavailable
from propylon.rag.sources.kinds import SourceRules
from propylon.rag.sources.service import SourceService
from propylon.rag.sources.store import SourceStore
from propylon.rag.sources.sync import SYNC_KIND, SyncHandler
from propylon.rag.sources.web import WebLimits
from propylon.sealed import SecretsKey
from tests.integration.rag.conftest import OTHER_TENANT, TENANT, Pipeline
from tests.support.ingestion import FakeJobContext
from tests.support.site import StaticSite, static_site

SEALING = SecretsKey(bytes(range(32)))  # the operator's key (`rag.sources.secrets_key`)


def rules(
    folder_root: Path | None = None, *, secrets: SecretsKey | None = SEALING, **web: Any
) -> SourceRules:
    limits = {
        "hosts": frozenset({"127.0.0.1"}),
        "max_pages": 50,
        "requests_per_s": 1000.0,
        "timeout_s": 30.0,
        "max_bytes": 1_000_000,
        "user_agent": "propylon-sync",
        **web,
    }
    roots = (str(folder_root),) if folder_root else ()
    return SourceRules(
        folder_roots=roots, web=WebLimits(**limits), min_interval_s=60, secrets=secrets
    )


class Sources:
    def __init__(self, pipeline: Pipeline, rules: SourceRules) -> None:
        self.pipeline = pipeline
        store = SourceStore(pipeline.database)
        self.service = SourceService(store, pipeline.service, pipeline.jobs, rules)
        self.handler = SyncHandler(store, pipeline.service, pipeline.jobs, rules)

    async def sync(self, source: dict[str, Any], **context: Any) -> dict[str, Any]:
        """Run the sync job the service enqueued, then the ingestion jobs it enqueued."""
        job = next(j for j in reversed(self.pipeline.jobs.jobs) if j.kind == SYNC_KIND)
        assert job.payload == {"source_id": str(source["id"])}
        ctx = self.pipeline.jobs.context(job, kind=SYNC_KIND, **context)
        result = await self.handler(ctx)
        assert result is not None
        await self.ingest_pending()
        return result

    async def sync_again(self, source: dict[str, Any]) -> dict[str, Any]:
        await self.service.sync(TENANT, "docs", str(source["id"]))
        return await self.sync(source)

    async def ingest_pending(self) -> None:
        for job in list(self.pipeline.jobs.jobs):
            if job.kind == "rag.ingest" and not getattr(job, "ran", False):
                job.ran = True  # type: ignore[attr-defined]
                await self.pipeline.handler(self.pipeline.jobs.context(job))

    async def documents(self) -> dict[str, str]:
        """source key -> the document's text, for the ready documents."""
        async with self.pipeline.database.connection() as conn:
            cur = await conn.execute(
                "SELECT metadata->>'source_key' AS key, text FROM documents"
                " WHERE status = 'ready' ORDER BY 1"
            )
            return {row["key"]: row["text"] for row in await cur.fetchall()}


def counts(result: dict[str, Any]) -> dict[str, int]:
    return {k: result[k] for k in ("added", "replaced", "deleted", "skipped", "rejected")}


def page(title: str, text: str, links: list[str] = []) -> bytes:  # noqa: B006
    anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links)
    return f"<html><body><h1>{title}</h1><p>{text}</p>{anchors}</body></html>".encode()


@pytest.fixture
async def collection(pipeline: Pipeline) -> dict[str, Any]:
    return await pipeline.service.create(TENANT, name="docs")


@pytest.fixture
async def site() -> AsyncIterator[StaticSite]:
    async with static_site() as served:
        served.pages = {
            "/robots.txt": b"User-agent: *\nDisallow: /docs/private\n",
            "/docs/": page(
                "Index",
                "The handbook.",
                ["a.html", "b.html", "c.html", "d.html", "private.html", "/elsewhere.html"],
            ),
            "/docs/a.html": page("Alpha", "Alpha pages describe the harbour."),
            "/docs/b.html": page("Beta", "Beta pages describe the lighthouse."),
            "/docs/c.html": page("Gamma", "Gamma pages describe the ferry."),
            "/docs/private.html": page("Private", "Robots may not read this."),
            "/elsewhere.html": page("Elsewhere", "Outside the prefix."),
        }
        yield served


async def test_a_site_sync_adds_replaces_deletes_and_skips_exactly_what_changed(
    pipeline: Pipeline, collection: dict[str, Any], site: StaticSite
) -> None:
    sources = Sources(pipeline, rules())
    source = await sources.service.create(
        TENANT, "docs", {"type": "url", "config": {"url": site.url + "/docs/", "mode": "site"}}
    )
    assert source["job_id"] and source["config"]["prefix"] == "/docs/"
    first = await sources.sync(source)
    assert counts(first) == {"added": 4, "replaced": 0, "deleted": 0, "skipped": 0, "rejected": 0}
    # robots.txt and the prefix were honoured; d.html does not exist yet (404: not listed).
    assert site.hits["/docs/private.html"] == 0 and site.hits["/elsewhere.html"] == 0
    before = await sources.documents()
    assert len(before) == 4 and "Gamma pages" in before[site.url + "/docs/c.html"]

    site.pages["/docs/d.html"] = page("Delta", "Delta pages describe the quay.")
    site.pages["/docs/b.html"] = page("Beta", "Beta pages now describe the breakwater.")
    del site.pages["/docs/c.html"]
    second = await sources.sync_again(source)

    assert counts(second) == {"added": 1, "replaced": 1, "deleted": 1, "skipped": 2, "rejected": 0}
    after = await sources.documents()
    assert set(after) == {
        site.url + p for p in ("/docs/", "/docs/a.html", "/docs/b.html", "/docs/d.html")
    }
    assert "breakwater" in after[site.url + "/docs/b.html"]
    assert "quay" in after[site.url + "/docs/d.html"]
    shown = await sources.service.get(TENANT, "docs", str(source["id"]))
    assert counts(shown["last_result"]) == counts(second) and shown["document_count"] == 4

    third = await sources.sync_again(source)
    assert counts(third) == {"added": 0, "replaced": 0, "deleted": 0, "skipped": 4, "rejected": 0}


CRAWLED = ("/docs/", "/docs/a.html", "/docs/b.html", "/docs/c.html")


async def test_a_site_synced_again_is_asked_only_for_changes_and_its_links_still_followed(
    pipeline: Pipeline, collection: dict[str, Any], site: StaticSite
) -> None:
    sources = Sources(pipeline, rules())
    source = await sources.service.create(
        TENANT, "docs", {"type": "url", "config": {"url": site.url + "/docs/", "mode": "site"}}
    )
    first = await sources.sync(source)
    assert counts(first)["added"] == 4
    assert {path: site.bodies[path] for path in CRAWLED} == dict.fromkeys(CRAWLED, 1)

    # d.html, linked from the index but missing last time, appears; the index does not change.
    site.pages["/docs/d.html"] = page("Delta", "Delta pages describe the quay.")
    second = await sources.sync_again(source)
    assert counts(second) == {"added": 1, "replaced": 0, "deleted": 0, "skipped": 4, "rejected": 0}
    # Every page was asked for again, and each answered 304: no body sent a second time. The
    # index's links were those kept from its first reading, so d.html was found.
    assert {path: site.hits[path] for path in CRAWLED} == dict.fromkeys(CRAWLED, 2)
    assert {path: site.bodies[path] for path in CRAWLED} == dict.fromkeys(CRAWLED, 1)
    assert site.bodies["/docs/d.html"] == 1
    assert site.url + "/docs/d.html" in await sources.documents()

    # Pages stored before their links were kept (migration 0026) are read in full once.
    async with pipeline.database.connection() as conn:
        await conn.execute("UPDATE source_items SET links = NULL")
    third = await sources.sync_again(source)
    assert counts(third)["skipped"] == 5 and site.bodies["/docs/"] == 2
    fourth = await sources.sync_again(source)
    assert counts(fourth)["skipped"] == 5 and site.bodies["/docs/"] == 2


async def test_a_page_served_with_a_date_only_is_asked_for_if_modified_since(
    pipeline: Pipeline, collection: dict[str, Any], site: StaticSite
) -> None:
    site.validator = "date"
    site.modified["/docs/a.html"] = "Sun, 06 Dec 2026 06:00:00 GMT"
    sources = Sources(pipeline, rules())
    source = await sources.service.create(
        TENANT, "docs", {"type": "url", "config": {"url": site.url + "/docs/a.html"}}
    )
    assert counts(await sources.sync(source))["added"] == 1
    second = await sources.sync_again(source)
    assert counts(second) == {"added": 0, "replaced": 0, "deleted": 0, "skipped": 1, "rejected": 0}
    assert (site.hits["/docs/a.html"], site.bodies["/docs/a.html"]) == (2, 1)

    site.pages["/docs/a.html"] = page("Alpha", "Alpha pages now describe the customs house.")
    site.modified["/docs/a.html"] = "Sun, 06 Dec 2026 07:00:00 GMT"
    third = await sources.sync_again(source)
    assert counts(third)["replaced"] == 1 and site.bodies["/docs/a.html"] == 2
    assert "customs house" in (await sources.documents())[site.url + "/docs/a.html"]


async def test_a_folder_sync_adds_replaces_deletes_and_skips_exactly_what_changed(
    pipeline: Pipeline, collection: dict[str, Any], tmp_path: Path
) -> None:
    root = tmp_path / "shared"
    folder = root / "handbook"
    (folder / "guides").mkdir(parents=True)
    (folder / "one.md").write_text("# One\n\nThe first note is about tides.\n")
    (folder / "two.md").write_text("# Two\n\nThe second note is about currents.\n")
    (folder / "guides" / "three.txt").write_text("The third note is about anchors.\n")
    (folder / "four.txt").write_text("The fourth note is about moorings.\n")
    (folder / "picture.bin").write_bytes(b"\x00\x01 not a document")
    (folder / ".hidden.md").write_text("hidden")
    sources = Sources(pipeline, rules(folder_root=root))
    source = await sources.service.create(
        TENANT, "docs", {"type": "folder", "config": {"path": str(folder)}}
    )
    first = await sources.sync(source)
    assert counts(first) == {"added": 4, "replaced": 0, "deleted": 0, "skipped": 0, "rejected": 0}

    (folder / "five.md").write_text("# Five\n\nThe fifth note is about buoys.\n")
    (folder / "two.md").write_text("# Two\n\nThe second note is now about eddies.\n")
    (folder / "guides" / "three.txt").unlink()
    # Touched, same bytes: its version changed, its content did not.
    (folder / "four.txt").write_text("The fourth note is about moorings.\n")
    second = await sources.sync_again(source)

    assert counts(second) == {"added": 1, "replaced": 1, "deleted": 1, "skipped": 2, "rejected": 0}
    after = await sources.documents()
    assert set(after) == {"one.md", "two.md", "four.txt", "five.md"}
    assert "eddies" in after["two.md"]


async def test_a_sync_interrupted_midway_resumes_with_the_same_counts(
    pipeline: Pipeline, collection: dict[str, Any], tmp_path: Path
) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(8):
        (folder / f"note-{i}.txt").write_text(f"Note {i} is about the number {i}.\n")
    sources = Sources(pipeline, rules(folder_root=tmp_path))
    source = await sources.service.create(
        TENANT, "docs", {"type": "folder", "config": {"path": str(folder)}}
    )

    class Killed(Exception):
        pass

    class DiesAfterThree(FakeJobContext):
        async def progress(self, *, stage: str, counters: dict[str, int] | None = None,
                           **kwargs: Any) -> None:  # fmt: skip
            if stage == "syncing" and (counters or {}).get("added", 0) >= 3:
                raise Killed  # the worker is gone: nothing after this runs
            await super().progress(stage=stage, counters=counters, **kwargs)

    job = next(j for j in pipeline.jobs.jobs if j.kind == SYNC_KIND)
    dying: JobContext = DiesAfterThree(payload=job.payload, tenant_id=TENANT, job_id=job.job_id)
    with pytest.raises(Killed):
        await sources.handler(dying)
    resumed = await sources.sync(source, attempt=2)

    assert counts(resumed) == {"added": 8, "replaced": 0, "deleted": 0, "skipped": 0, "rejected": 0}
    assert len(await sources.documents()) == 8
    ingest_jobs = [j for j in pipeline.jobs.jobs if j.kind == "rag.ingest"]
    assert len(ingest_jobs) == 8  # each item accepted once


async def test_sources_are_checked_scoped_and_never_show_their_secret(
    pipeline: Pipeline, collection: dict[str, Any], tmp_path: Path
) -> None:
    sources = Sources(pipeline, rules(folder_root=tmp_path / "allowed"))
    with pytest.raises(InvalidRequest, match="folder_roots"):
        await sources.service.create(
            TENANT, "docs", {"type": "folder", "config": {"path": str(tmp_path / "elsewhere")}}
        )
    with pytest.raises(InvalidRequest, match="folder_roots"):
        await sources.service.create(
            TENANT, "docs",
            {"type": "folder", "config": {"path": str(tmp_path / "allowed" / ".." / "x")}},
        )  # fmt: skip
    with pytest.raises(InvalidRequest, match="type"):
        await sources.service.create(TENANT, "docs", {"type": "ftp", "config": {}})
    with pytest.raises(InvalidRequest, match="http"):
        await sources.service.create(
            TENANT, "docs", {"type": "url", "config": {"url": "file:///etc/passwd"}}
        )
    with pytest.raises(InvalidRequest, match="interval_s"):
        await sources.service.create(
            TENANT, "docs",
            {"type": "url", "config": {"url": "http://127.0.0.1/"}, "interval_s": 5},
        )  # fmt: skip
    # An address no sync may read (only 127.0.0.1 is allowed here): refused when made, not a
    # source whose every sync fails.
    for url in ("http://10.0.0.5/", "http://[::1]:8080/docs/", "http://169.254.169.254/"):
        with pytest.raises(InvalidRequest, match="non-public") as refused:
            await sources.service.create(TENANT, "docs", {"type": "url", "config": {"url": url}})
        assert refused.value.param == "config.url"  # named where the body holds it
    # A field a source does not read, in `config` or beside it, was dropped unread.
    for body, param in (
        ({"type": "url", "config": {"url": "http://127.0.0.1/", "bogus": 1}}, "config.bogus"),
        ({"type": "url", "config": {"url": "http://127.0.0.1/"}, "schedule": "daily"}, "schedule"),
    ):
        with pytest.raises(InvalidRequest) as refused:
            await sources.service.create(TENANT, "docs", body)
        assert refused.value.param == param, body
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    source = await sources.service.create(
        TENANT, "docs",
        {
            "type": "s3",
            "config": {"endpoint": "http://127.0.0.1:9", "bucket": "b",
                       "access_key_id": "AKIAIOSFODNN7EXAMPLE"},
            "secret_access_key": secret,
        },
    )  # fmt: skip
    listed = await sources.service.list_all(TENANT, "docs")
    assert secret not in repr(listed) and "AKIAIOSFODNN7EXAMPLE" not in repr(listed)
    assert listed[0]["config"]["access_key_id"] == "****MPLE" and listed[0]["has_secret"]
    with pytest.raises(NotFound):
        await sources.service.get(OTHER_TENANT, "docs", str(source["id"]))
    with pytest.raises(NotFound):
        await sources.service.get(TENANT, "docs", str(uuid.uuid4()))


async def test_a_site_that_fails_midway_or_loses_its_start_page_deletes_nothing(
    pipeline: Pipeline, collection: dict[str, Any], site: StaticSite
) -> None:
    sources = Sources(pipeline, rules())
    source = await sources.service.create(
        TENANT, "docs", {"type": "url", "config": {"url": site.url + "/docs/", "mode": "site"}}
    )
    await sources.sync(source)
    site.failing.add("/docs/b.html")
    await sources.service.sync(TENANT, "docs", str(source["id"]))
    with pytest.raises(SourceUnavailable, match="500"):
        await sources.sync(source)
    site.failing.clear()
    del site.pages["/docs/"]
    with pytest.raises(SourceUnavailable, match="404"):
        await sources.sync(source, attempt=2)
    assert len(await sources.documents()) == 4

    # That sync fails for good; what it had recorded goes with the next sync.
    failed = next(j for j in reversed(pipeline.jobs.jobs) if j.kind == SYNC_KIND).job_id
    records = "SELECT count(*) AS n FROM source_sync_items WHERE job_id = %s"
    async with pipeline.database.connection() as conn:
        assert (await (await conn.execute(records, (failed,))).fetchone() or {})["n"] > 0
        await conn.execute(
            "INSERT INTO jobs (id, tenant_id, kind, state) VALUES (%s, %s, 'rag.sync', 'failed')",
            (failed, TENANT),
        )
    site.pages["/docs/"] = page("Index", "The handbook.", ["a.html", "b.html", "c.html"])
    await sources.sync_again(source)
    async with pipeline.database.connection() as conn:
        assert (await (await conn.execute(records, (failed,))).fetchone() or {})["n"] == 0


@pytest.fixture
def s3_server() -> Iterator[str]:
    """moto's S3-compatible server on loopback (its own thread), checking signatures."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_setup(endpoint: str) -> tuple[Any, str, str]:
    """A bucket, a user allowed to read it, and signatures checked from now on: (client, the
    user's access key id, its secret)."""
    import boto3  # type: ignore[import-untyped]
    import requests

    session = boto3.session.Session(
        aws_access_key_id="setup", aws_secret_access_key="setup", region_name="us-east-1"
    )
    s3 = session.client("s3", endpoint_url=endpoint)
    iam = session.client("iam", endpoint_url=endpoint)
    s3.create_bucket(Bucket="handbook")
    iam.create_user(UserName="reader")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*",
                                                     "Resource": "*"}]}  # fmt: skip
    iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    for name, text in [("kb/one.md", "The first note is about tides."),
                       ("kb/two.md", "The second note is about currents."),
                       ("kb/deep/three.txt", "The third note is about anchors."),
                       ("kb/four.txt", "The fourth note is about moorings."),
                       ("other/five.txt", "Outside the prefix.")]:  # fmt: skip
        s3.put_object(Bucket="handbook", Key=name, Body=text.encode())
    # From now on every request must be signed by a known user (moto's server API).
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
    reader = boto3.session.Session(
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        region_name="us-east-1",
    ).client("s3", endpoint_url=endpoint)
    return reader, key["AccessKeyId"], key["SecretAccessKey"]


async def test_an_s3_sync_adds_replaces_deletes_and_skips_exactly_what_changed(
    pipeline: Pipeline,
    collection: dict[str, Any],
    s3_server: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    s3, access_key_id, secret = await asyncio.to_thread(s3_setup, s3_server)
    sources = Sources(pipeline, rules())
    config = {"endpoint": s3_server, "bucket": "handbook", "prefix": "kb/",
              "access_key_id": access_key_id}  # fmt: skip
    source = await sources.service.create(
        TENANT, "docs", {"type": "s3", "config": config, "secret_access_key": secret}
    )
    with caplog.at_level(logging.DEBUG):
        first = await sources.sync(source)
        assert counts(first) == {"added": 4, "replaced": 0, "deleted": 0, "skipped": 0,
                                 "rejected": 0}  # fmt: skip

        await asyncio.to_thread(
            s3.put_object, Bucket="handbook", Key="kb/six.md", Body=b"The sixth is about buoys."
        )
        await asyncio.to_thread(
            s3.put_object, Bucket="handbook", Key="kb/two.md", Body=b"Two is now about eddies."
        )
        await asyncio.to_thread(s3.delete_object, Bucket="handbook", Key="kb/deep/three.txt")
        second = await sources.sync_again(source)
    assert counts(second) == {"added": 1, "replaced": 1, "deleted": 1, "skipped": 2, "rejected": 0}
    assert set(await sources.documents()) == {"kb/one.md", "kb/two.md", "kb/four.txt", "kb/six.md"}
    assert secret not in caplog.text

    # The secret is stored sealed with the operator's key (`rag.sources.secrets_key`).
    (sealed,) = await stored_secrets(pipeline)
    assert sealed is not None and sealed.startswith("sealed:v1:") and secret not in sealed
    # A source made before secrets were sealed holds it in clear: read, then sealed at its sync.
    async with pipeline.database.connection() as conn:
        await conn.execute("UPDATE sources SET secret = %s", (secret,))
    third = await sources.sync_again(source)
    assert counts(third) == {"added": 0, "replaced": 0, "deleted": 0, "skipped": 4, "rejected": 0}
    (resealed,) = await stored_secrets(pipeline)
    assert resealed is not None and resealed.startswith("sealed:v1:") and secret not in resealed
    # A worker with another key, or none, says so instead of signing with garbage.
    with pytest.raises(SourceUnavailable, match="another key") as other:
        await Sources(pipeline, rules(secrets=SecretsKey(bytes(32)))).sync_again(source)
    with pytest.raises(SourceUnavailable, match=r"rag\.sources\.secrets_key") as keyless:
        await Sources(pipeline, rules(secrets=None)).sync_again(source)
    assert secret not in str(other.value) + str(keyless.value)

    wrong = await sources.service.create(
        TENANT, "docs", {"type": "s3", "config": config, "secret_access_key": "not-the-secret"}
    )
    with pytest.raises(SourceUnavailable, match="403") as refused:
        await sources.sync(wrong)
    assert "not-the-secret" not in str(refused.value)


async def test_a_scheduled_source_is_enqueued_once_when_due(
    pipeline: Pipeline, collection: dict[str, Any], site: StaticSite
) -> None:
    sources = Sources(pipeline, rules())
    body = {"type": "url", "config": {"url": site.url + "/docs/a.html"}, "interval_s": 3600}
    source = await sources.service.create(TENANT, "docs", body)
    await sources.sync(source)
    syncs = len([j for j in pipeline.jobs.jobs if j.kind == SYNC_KIND])
    assert await sources.handler.schedule() == 0  # not due for an hour

    async with pipeline.database.connection() as conn:
        await conn.execute(
            "UPDATE sources SET next_sync_at = now() - interval '1 second' WHERE id = %s",
            (source["id"],),
        )
    assert await sources.handler.schedule() == 1
    assert await sources.handler.schedule() == 0  # moved to its next time
    assert len([j for j in pipeline.jobs.jobs if j.kind == SYNC_KIND]) == syncs + 1
    again = await sources.sync(source)
    assert counts(again)["skipped"] == 1


def sitemap(base: str, pages: dict[str, str]) -> bytes:
    urls = "".join(
        f"<url><loc>{base}{path}</loc><lastmod>{lastmod}</lastmod></url>"
        for path, lastmod in pages.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'
    ).encode()


async def test_a_sitemap_sync_fetches_only_what_its_lastmod_says_changed(
    pipeline: Pipeline, collection: dict[str, Any], site: StaticSite
) -> None:
    listed = {
        "/docs/a.html": "2026-01-01",
        "/docs/b.html": "2026-01-01",
        "/docs/c.html": "2026-01-01",
    }
    index = f'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><sitemap><loc>{site.url}/docs-map.xml</loc></sitemap></sitemapindex>'
    site.pages["/sitemap.xml"] = index.encode()
    site.pages["/docs-map.xml"] = sitemap(site.url, listed)
    site.types.update({"/sitemap.xml": "application/xml", "/docs-map.xml": "application/xml"})
    sources = Sources(pipeline, rules())
    body = {"type": "url", "config": {"url": site.url + "/sitemap.xml", "mode": "sitemap"}}
    source = await sources.service.create(TENANT, "docs", body)
    first = await sources.sync(source)
    assert counts(first) == {"added": 3, "replaced": 0, "deleted": 0, "skipped": 0, "rejected": 0}
    hits_a = site.hits["/docs/a.html"]

    site.pages["/docs/b.html"] = page("Beta", "Beta now describes the breakwater.")
    site.pages["/docs/d.html"] = page("Delta", "Delta pages describe the quay.")
    listed = {
        "/docs/a.html": "2026-01-01",
        "/docs/b.html": "2026-02-01",
        "/docs/d.html": "2026-02-01",
    }
    site.pages["/docs-map.xml"] = sitemap(site.url, listed)
    second = await sources.sync_again(source)

    assert counts(second) == {"added": 1, "replaced": 1, "deleted": 1, "skipped": 1, "rejected": 0}
    assert site.hits["/docs/a.html"] == hits_a  # unchanged by its lastmod: not fetched again


async def test_items_that_cannot_be_ingested_are_counted_rejected_and_the_rest_synced(
    pipeline: Pipeline, collection: dict[str, Any], tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "fine.md").write_text("# Fine\n\nAn ordinary note.\n")
    (folder / "huge.txt").write_text("word " * 400)  # 2,000 bytes, over the limit below
    (folder / "empty.txt").write_text("")
    sources = Sources(pipeline, rules(folder_root=tmp_path, max_bytes=1000))
    source = await sources.service.create(
        TENANT, "docs", {"type": "folder", "config": {"path": str(folder)}}
    )
    result = await sources.sync(source)
    assert counts(result) == {"added": 1, "replaced": 0, "deleted": 0, "skipped": 0, "rejected": 2}
    assert set(await sources.documents()) == {"fine.md"}


async def test_a_file_named_in_bytes_that_are_not_utf8_is_rejected_and_the_rest_synced(
    pipeline: Pipeline, collection: dict[str, Any], tmp_path: Path
) -> None:
    """Python reads such a name with lone surrogates, which PostgreSQL cannot store: the whole
    sync failed on it, every time. Now that one file is counted rejected."""
    folder = tmp_path / "names"
    folder.mkdir()
    (folder / "fine.md").write_text("# Fine\n\nAn ordinary note.\n")
    (folder / os.fsdecode(b"caf\xe9.md")).write_text("# Latin-1\n\nNamed in latin-1.\n")
    sources = Sources(pipeline, rules(folder_root=tmp_path))
    source = await sources.service.create(
        TENANT, "docs", {"type": "folder", "config": {"path": str(folder)}}
    )
    result = await sources.sync(source)
    assert counts(result) == {"added": 1, "replaced": 0, "deleted": 0, "skipped": 0, "rejected": 1}
    assert set(await sources.documents()) == {"fine.md"}
    again = await sources.sync_again(source)
    assert counts(again) == {"added": 0, "replaced": 0, "deleted": 0, "skipped": 1, "rejected": 1}


async def test_a_file_changed_into_a_copy_of_another_shares_its_document(
    pipeline: Pipeline, collection: dict[str, Any], tmp_path: Path
) -> None:
    folder = tmp_path / "copies"
    folder.mkdir()
    (folder / "a.txt").write_text("The original note about tides.\n")
    (folder / "b.txt").write_text("Another note about currents.\n")
    sources = Sources(pipeline, rules(folder_root=tmp_path))
    source = await sources.service.create(
        TENANT, "docs", {"type": "folder", "config": {"path": str(folder)}}
    )
    await sources.sync(source)
    (folder / "b.txt").write_text("The original note about tides.\n")
    second = await sources.sync_again(source)
    assert counts(second) == {"added": 0, "replaced": 1, "deleted": 0, "skipped": 1, "rejected": 0}
    assert list(await sources.documents()) == ["a.txt"]  # b's old version is gone, not orphaned
    (folder / "a.txt").unlink()
    third = await sources.sync_again(source)
    assert counts(third)["deleted"] == 1
    assert len(await sources.documents()) == 1  # still b's


# Sealed secrets (`rag.sources.secrets_key`) ----------------------------------------------


async def stored_secrets(pipeline: Pipeline) -> list[str | None]:
    async with pipeline.database.connection() as conn:
        cur = await conn.execute("SELECT secret FROM sources ORDER BY created_at")
        return [row["secret"] for row in await cur.fetchall()]


async def test_without_a_secrets_key_an_s3_source_is_refused_naming_the_setting(
    pipeline: Pipeline, collection: dict[str, Any]
) -> None:
    sources = Sources(pipeline, rules(secrets=None))
    body = {
        "type": "s3",
        "config": {"endpoint": "https://s3.example.com", "bucket": "b", "access_key_id": "AKIA"},
        "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    }
    with pytest.raises(InvalidRequest) as refused:
        await sources.service.create(TENANT, "docs", body)
    error = refused.value
    assert (error.status, error.code, error.param) == (
        400,
        "secrets_key_not_set",
        "secret_access_key",
    )
    assert "`rag.sources.secrets_key`" in error.message
    assert "PROPYLON_RAG__SOURCES__SECRETS_KEY" in error.message
    assert await stored_secrets(pipeline) == []
    with pytest.raises(InvalidRequest, match="s3` sources only"):
        await sources.service.create(
            TENANT, "docs", {"type": "url", "config": {"url": "https://example.com/"},
                             "secret_access_key": "x"},
        )  # fmt: skip
