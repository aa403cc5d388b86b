"""Background runs: accepted at once, executed by a worker as a durable `run` job, followed by
polling (`get`) or by the ordered event log (`follow`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from psycopg.types.json import Jsonb

from propylon.db.database import Database
from propylon.db.named_queries import named_queries
from propylon.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from propylon.jobs.progress import ProgressHub
from propylon.jobs.queue import JobQueue
from propylon.params import is_uuid
from propylon.principal import Principal
from propylon.rag.chat import PREFIX as RAG_PREFIX
from propylon.runs import events
from propylon.runs.agent_spec import normalise_agent
from propylon.runs.events import RunEventLog
from propylon.runs.mcp import McpServers
from propylon.runs.spec import normalise
from propylon.runs.tools import MCP_PREFIX, check_tools

JOB_KIND = "run"


def _q(name: str) -> Any:
    return named_queries("propylon.runs")[name]


def _principal_json(principal: Principal) -> dict[str, Any]:
    return {
        "tenant_id": principal.tenant_id,
        "tenant_name": principal.tenant_name,
        "key_id": principal.key_id,
        "key_prefix": principal.key_prefix,
        "features": sorted(principal.features),
        "models": sorted(principal.models) if principal.models is not None else None,
        "is_operator": principal.is_operator,
    }


def _view(row: dict[str, Any]) -> dict[str, Any]:
    state = row["state"]
    job_state = row.get("job_state")
    # A worker that died or a job cancelled before it started leaves the run row behind.
    if state in ("queued", "running") and job_state in ("failed", "cancelled"):
        state = job_state
    return {
        "id": str(row["id"]),
        "object": "run",
        "kind": row["kind"],
        "state": state,
        "job_id": str(row["job_id"]) if row["job_id"] else None,
        "steps": row["steps"],
        "partial_output": row["output"],
        "result": row["result"],
        "error": row["error"] or (row.get("job_reason") if state == "failed" else None),
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
    }


FindCollection = Callable[[str, str], Awaitable[object]]
"""(tenant id, id or name) -> the collection; raises ``NotFound`` for another tenant's."""
CheckModel = Callable[[str], object]
"""A chat model's public name -> its configuration; raises ``ModelNotFound`` otherwise."""


class RunService:
    def __init__(
        self,
        database: Database,
        jobs: JobQueue,
        hub: ProgressHub,
        *,
        max_attempts: int = 2,
        find_collection: FindCollection | None = None,
        check_model: CheckModel | None = None,
        mcp: McpServers | None = None,
    ) -> None:
        self._database = database
        self._jobs = jobs
        self._hub = hub
        self._max_attempts = max_attempts
        self._find_collection = find_collection
        self._check_model = check_model
        self._mcp = mcp

    async def create(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """Validate, store and enqueue; the run is visible to workers when this commits. A
        step naming a collection the tenant does not have, or a model that is not here or not
        for this key, is refused now, not a failed run."""
        kind, steps = normalise(body)
        spec: dict[str, Any] = {"steps": steps}
        if kind == "agent":
            spec["agent"] = agent = normalise_agent(body)
            self._check_model_use(principal, agent["model"], "model")
            check_tools(principal, agent["tools"])
            await self._check_mcp_servers(principal.tenant_id, agent["tools"])
        for index, step in enumerate(steps):
            if step["kind"] == "model":
                where = "request" if kind == "chat" else f"steps[{index}].request"
                self._check_model_use(principal, step["request"]["model"], f"{where}.model")
            elif step["kind"] == "answer" and isinstance(step.get("model"), str):
                where = "model" if kind == "answer" else f"steps[{index}].model"
                self._check_model_use(principal, step["model"], where)
        await self._check_collections(principal.tenant_id, kind, steps)
        async with self._database.connection() as conn:
            cur = await conn.execute(
                _q("insert_run"),
                {
                    "tenant_id": principal.tenant_id,
                    "kind": kind,
                    "spec": Jsonb(spec),
                    "principal": Jsonb(_principal_json(principal)),
                    "steps": Jsonb([] if kind == "agent" else {}),
                },
            )
            row = await cur.fetchone()
            assert row is not None
            run_id = str(row["id"])
            job_id = await self._jobs.enqueue(
                tenant_id=principal.tenant_id,
                kind=JOB_KIND,
                payload={"run_id": run_id},
                max_attempts=self._max_attempts,
                conn=conn,
            )
            await conn.execute(_q("attach_job"), {"run_id": run_id, "job_id": job_id})
        return await self.get(principal.tenant_id, run_id)

    def _check_model_use(self, principal: Principal, model: str, param: str) -> None:
        """``model`` is configured (a ``rag/`` model: its collection is checked apart) and
        this key may use it; a name that refers to an earlier step is known only later."""
        if "{{" in model:
            return
        if self._check_model is not None and not model.startswith(RAG_PREFIX):
            try:
                self._check_model(model)
            except NotFound as exc:
                raise NotFound(exc.message, param=param, code=exc.code) from None
        if not principal.can_use_model(model):
            raise PermissionDenied(f"This key may not use the model `{model}`.", param=param)

    async def _check_mcp_servers(self, tenant_id: str, tools: list[dict[str, Any]]) -> None:
        for index, entry in enumerate(tools):
            if not entry["name"].startswith(MCP_PREFIX):
                continue
            if self._mcp is None:
                raise InvalidRequest("MCP tools are not available.", param=f"tools[{index}]")
            try:
                await self._mcp.get(tenant_id, entry["name"].removeprefix(MCP_PREFIX))
            except NotFound as exc:
                raise NotFound(exc.message, param=f"tools[{index}]", code=exc.code) from None

    async def get(self, tenant_id: str, run_id: str) -> dict[str, Any]:
        return _view(await self._row(tenant_id, run_id))

    async def _check_collections(
        self, tenant_id: str, kind: str, steps: list[dict[str, Any]]
    ) -> None:
        if self._find_collection is None:
            return
        for index, step in enumerate(steps):
            ref = step.get("collection")
            if not isinstance(ref, str) or "{{" in ref:  # a reference: known only when it runs
                continue
            try:
                await self._find_collection(tenant_id, ref)
            except NotFound as exc:
                param = "collection" if kind == "answer" else f"steps[{index}].collection"
                raise NotFound(exc.message, param=param, code=exc.code) from None

    async def list_recent(
        self, tenant_id: str, limit: int = 50, after: str | None = None
    ) -> dict[str, Any]:
        """A page of the tenant's runs, newest first: ``limit`` of them made before the run
        ``after`` (404 naming ``after`` when that is not one of the tenant's runs)."""
        if after is not None:
            await self._row(tenant_id, after, param="after")
        async with self._database.connection() as conn:
            cur = await conn.execute(
                _q("list_runs"), {"tenant_id": tenant_id, "limit": limit + 1, "after": after}
            )
            rows = [_view(row) for row in await cur.fetchall()]
        page = rows[:limit]
        return {
            "object": "list",
            "data": page,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(rows) > limit,
        }

    async def decide(
        self, tenant_id: str, run_id: str, *, approve: bool, note: str | None = None
    ) -> dict[str, Any]:
        """Approve or deny the tool call an agent run waits on; the run is queued again (a
        denied call is reported to the model, which then answers without it). 409 when the
        run waits for nothing."""
        if not is_uuid(run_id):
            raise _not_found(run_id)
        async with self._database.connection() as conn, conn.transaction():
            cur = await conn.execute(_q("lock_run"), {"run_id": run_id, "tenant_id": tenant_id})
            row = await cur.fetchone()
            if row is None:
                raise _not_found(run_id)
            steps = row["steps"] if isinstance(row["steps"], list) else []
            waiting = [s for s in steps if s.get("state") == "waiting_for_approval"]
            if row["state"] != "waiting_for_approval" or not waiting:
                raise Conflict(
                    f"Run `{run_id}` is {row['state']}: it waits for no approval.",
                    param="run_id",
                    code="run_not_waiting_for_approval",
                )
            step = waiting[0]
            step["state"] = "approved" if approve else "denied"
            if note:
                step["note"] = note[:1000]
            job_id = await self._jobs.enqueue(
                tenant_id=tenant_id,
                kind=JOB_KIND,
                payload={"run_id": run_id},
                max_attempts=self._max_attempts,
                conn=conn,
            )
            await conn.execute(
                _q("resume_run"), {"run_id": run_id, "steps": Jsonb(steps), "job_id": job_id}
            )
            # Written with the job: once a worker can take it, the event is in the log (after
            # the commit, a worker's first event took the same id: a 500 for the approver).
            decision = {"step": steps.index(step), "tool": step.get("name"), "note": note}
            await RunEventLog(self._database, run_id).append(
                "approval_granted" if approve else "approval_denied", decision, conn=conn
            )
        return await self.get(tenant_id, run_id)

    async def cancel(self, tenant_id: str, run_id: str) -> dict[str, Any]:
        row = await self._row(tenant_id, run_id)
        if row["state"] == "waiting_for_approval":  # no job runs it: end it here
            async with self._database.connection() as conn:
                cur = await conn.execute(
                    _q("cancel_waiting_run"),
                    {"run_id": run_id, "error": "Cancelled while waiting for an approval."},
                )
            if cur.rowcount:
                await RunEventLog(self._database, run_id).append(
                    "run_cancelled", {"error": "Cancelled while waiting for an approval."}
                )
                return await self.get(tenant_id, run_id)
            # Approved (or denied) since it was read: cancel the job that now carries it on.
            row = await self._row(tenant_id, run_id)
        if row["job_id"] is not None and row["state"] not in events.TERMINAL:
            await self._jobs.cancel(tenant_id, str(row["job_id"]))
        for _ in range(40):  # the worker records the cancellation within moments
            view = await self.get(tenant_id, run_id)
            if view["state"] in events.TERMINAL:
                return view
            await asyncio.sleep(0.05)
        return await self.get(tenant_id, run_id)

    async def cancel_pending_of_key(self, tenant_id: str, key_id: str, reason: str) -> int:
        """Cancel every run of the key that no worker is running: queued, or waiting for an
        approval (which another key could otherwise still give); how many."""
        async with self._database.connection() as conn:
            cur = await conn.execute(
                _q("cancel_waiting_runs_of_key"),
                {"tenant_id": tenant_id, "key_id": key_id, "error": reason},
            )
            waiting = [str(row["id"]) for row in await cur.fetchall()]
        for run_id in waiting:
            await RunEventLog(self._database, run_id).append("run_cancelled", {"error": reason})
        async with self._database.connection() as conn:
            cur = await conn.execute(
                _q("queued_runs_of_key"), {"tenant_id": tenant_id, "key_id": key_id}
            )
            rows = await cur.fetchall()
        for row in rows:
            await self._jobs.cancel(tenant_id, str(row["job_id"]))
        if rows:
            async with self._database.connection() as conn:
                await conn.execute(
                    _q("mark_cancelled"), {"ids": [row["id"] for row in rows], "error": reason}
                )
        return len(waiting) + len(rows)

    async def follow(
        self, tenant_id: str, run_id: str, after: int
    ) -> AsyncIterator[dict[str, Any]]:
        """The run's events after id ``after``, live, until it ends (404 for another tenant)."""
        await self._row(tenant_id, run_id)

        async def state() -> str:
            return str((await self.get(tenant_id, run_id))["state"])

        async for event in events.follow(self._database, self._hub, run_id, after, state):
            yield event

    async def _row(self, tenant_id: str, run_id: str, param: str = "run_id") -> dict[str, Any]:
        row = None
        if is_uuid(run_id):  # anything else is simply not a run of this tenant
            async with self._database.connection() as conn:
                cur = await conn.execute(_q("get_run"), {"run_id": run_id, "tenant_id": tenant_id})
                row = await cur.fetchone()
        if row is None:
            raise _not_found(run_id, param)
        return dict(row)


def _not_found(run_id: str, param: str = "run_id") -> NotFound:
    return NotFound(f"No run `{run_id}`.", param=param, code="run_not_found")
