"""Runs a run's steps on a worker, as the handler of `run` jobs.

Each step gets a timeout and a number of retries (`timeout_s`, `retries`); every stage of the
run is an event in its log. Cancelling the job cancels the step in flight, mid-generation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from opentelemetry.trace import Tracer
from psycopg.types.json import Jsonb

from propylon.db.database import Database
from propylon.db.named_queries import named_queries
from propylon.errors import JobFailed, PropylonError, ServiceUnavailable
from propylon.gateway.protocol import ChatService
from propylon.jobs.handler import JobContext
from propylon.observe.tracing import mark_root, span
from propylon.principal import Principal
from propylon.rag.search import SearchService
from propylon.runs.agent import AgentLoop, AgentStopped
from propylon.runs.events import RunEventLog
from propylon.runs.mcp import McpServers
from propylon.runs.spec import MissingOutput, render
from propylon.runs.steps import STEPS, Detector, StepContext
from propylon.runs.tools import BUILT_IN, MCP_PREFIX, Tool, ToolContext
from propylon.storable import escape_unstorable, storable_json

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_RETRIES = 1


def principal_from_json(data: dict[str, Any]) -> Principal:
    models = data.get("models")
    return Principal(
        tenant_id=data["tenant_id"],
        tenant_name=data.get("tenant_name", ""),
        key_id=data.get("key_id"),
        key_prefix=data.get("key_prefix"),
        features=frozenset(data.get("features", ())),
        models=frozenset(models) if models is not None else None,
        # `is_admin`: runs queued before there were two kinds of admin (it meant operator).
        is_operator=bool(data.get("is_operator", data.get("is_admin", False))),
    )


KeyRevoked = Callable[[str], Awaitable[bool]]
"""Whether the key (by id) a run was created with has been revoked (or no longer exists)."""


class RunExecutor:
    """The `run` job handler."""

    def __init__(
        self,
        database: Database,
        chat: ChatService,
        search: SearchService | None = None,
        detector: Detector | None = None,
        key_revoked: KeyRevoked | None = None,
        http_get_hosts: Callable[[str], frozenset[str]] | None = None,
        mcp: McpServers | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._tracer = tracer  # None: tracing is off
        self._database = database
        self._chat = chat
        self._search = search
        self._detector = detector
        self._key_revoked = key_revoked
        self._http_get_hosts = http_get_hosts or (lambda tenant: frozenset())
        self._mcp = mcp

    async def __call__(self, job: JobContext) -> dict[str, Any]:
        run_id = str(job.payload["run_id"])
        run = await self._load(run_id)
        principal = principal_from_json(run["principal"])
        # Under the job's span: the run's own (``run:<id>``), a child per step, and the
        # model calls of the steps under those.
        with span(self._tracer, f"run {run['kind']}", lambda: {"propylon.run.id": run_id}) as s:
            mark_root(s, principal.tenant_id, f"run:{run_id}")
            return await self._execute(job, run_id, run, principal)

    async def _execute(
        self, job: JobContext, run_id: str, run: dict[str, Any], principal: Principal
    ) -> dict[str, Any]:
        log = RunEventLog(self._database, run_id)
        if (
            self._key_revoked is not None
            and principal.key_id is not None
            and await self._key_revoked(principal.key_id)
        ):
            reason = f"The API key {principal.key_prefix}… was revoked; the run was cancelled."
            await self._finish(run_id, log, "cancelled", {}, None, reason)
            raise JobFailed(reason)
        ctx = StepContext(
            run_id=run_id,
            principal=principal,
            database=self._database,
            chat=self._chat,
            search=self._search,
            detector=self._detector,
            log=log,
        )
        if run["kind"] == "agent":
            return await self._agent(job, ctx, run)
        steps: dict[str, dict[str, Any]] = {}
        await self._save(run_id, "running", steps, "")
        await log.append("run_started", {"attempt": job.attempt})
        try:
            for step in run["spec"]["steps"]:
                await job.raise_if_cancelled()
                steps[step["name"]] = {"state": "running", "kind": step["kind"]}
                await self._save(run_id, "running", steps, "")
                with span(
                    self._tracer, f"run.step {step['name']}", partial(_step_attributes, step)
                ):
                    output = await self._step(ctx, step, steps)
                ctx.outputs[step["name"]] = output
                steps[step["name"]] = {"state": "succeeded", "kind": step["kind"], "output": output}
                await log.append("step_succeeded", {"step": step["name"], "output": output})
        except asyncio.CancelledError:
            await asyncio.shield(self._finish(run_id, log, "cancelled", steps, None, None))
            raise
        except PropylonError as exc:
            await self._finish(run_id, log, "failed", steps, None, exc.message)
            raise JobFailed(exc.message) from exc
        last = run["spec"]["steps"][-1]["name"]
        result = {"output": ctx.outputs[last], "steps": ctx.outputs}
        await self._finish(run_id, log, "succeeded", steps, result, None)
        return {"run_id": run_id}

    async def _agent(
        self, job: JobContext, ctx: StepContext, run: dict[str, Any]
    ) -> dict[str, Any]:
        """One attempt at an agent run: resumes from the steps a previous attempt recorded."""
        run_id, log, spec = ctx.run_id, ctx.log, run["spec"]["agent"]
        steps: list[dict[str, Any]] = run["steps"] if isinstance(run["steps"], list) else []
        hosts = self._http_get_hosts(ctx.principal.tenant_name)
        tools = ToolContext(
            ctx.principal, self._chat, self._search, hosts, run_id, ctx, spec.get("chains", {})
        )

        async def save(state: str) -> None:
            await self._save(run_id, state, steps, None)

        await log.append("run_started", {"attempt": job.attempt})
        try:
            offered = await self._offered(ctx.principal.tenant_id, spec["tools"])
            loop = AgentLoop(ctx, tools, spec, offered, steps, save, job)
            await save("running")
            await log.append("agent_resumed" if steps else "agent_started", {"at_step": len(steps)})
            result = await loop.run()
        except asyncio.CancelledError:
            await asyncio.shield(self._finish(run_id, log, "cancelled", steps, None, None))
            raise
        except AgentStopped as stop:
            await self._finish(
                run_id, log, "failed", steps, {"stop_reason": stop.reason}, stop.message
            )
            raise JobFailed(stop.message) from stop
        except PropylonError as exc:
            await self._finish(run_id, log, "failed", steps, None, exc.message)
            raise JobFailed(exc.message) from exc
        if result is None:  # parked until a person approves or denies a tool call
            return {"run_id": run_id, "state": "waiting_for_approval"}
        await self._finish(run_id, log, "succeeded", steps, result, None)
        return {"run_id": run_id}

    async def _offered(
        self, tenant_id: str, entries: list[dict[str, Any]]
    ) -> dict[str, tuple[Tool, bool]]:
        """The tools this run offers its model, by the name the model calls, with whether
        each waits for an approval; an MCP entry brings all of its server's tools."""
        offered: dict[str, tuple[Tool, bool]] = {}
        for entry in entries:
            approval = entry["approval"] == "required"
            if entry["name"].startswith(MCP_PREFIX):
                if self._mcp is None:
                    raise ServiceUnavailable("MCP tools are not available in this process.")
                server = entry["name"].removeprefix(MCP_PREFIX)
                for tool in await self._mcp.tools(tenant_id, server):
                    offered[tool.name] = (tool, approval)
            else:
                offered[entry["name"]] = (BUILT_IN[entry["name"]], approval)
        return offered

    async def _step(
        self, ctx: StepContext, step: dict[str, Any], steps: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        name, kind = step["name"], step["kind"]
        timeout = float(_given(step.get("timeout_s"), DEFAULT_TIMEOUT_S))  # null: the default
        retries = int(_given(step.get("retries"), DEFAULT_RETRIES))
        try:
            params = render(step, ctx.outputs)
        except MissingOutput as exc:
            steps[name]["state"] = "failed"
            raise JobFailed(f"step `{name}` failed: {exc}") from None
        for attempt in range(retries + 1):
            steps[name]["attempts"] = attempt + 1
            await ctx.log.append(
                "step_started", {"step": name, "kind": kind, "attempt": attempt + 1}
            )
            try:
                async with asyncio.timeout(timeout):
                    return await STEPS[kind](ctx, name, params)
            except TimeoutError:
                error = f"step `{name}` timed out after {timeout:g} s"
            except PropylonError as exc:
                if not exc.retryable:
                    raise JobFailed(f"step `{name}` failed: {exc.message}") from exc
                error = f"step `{name}` failed: {exc.message}"
            if attempt < retries:
                await ctx.log.append("step_retry", {"step": name, "error": error})
                await asyncio.sleep(min(0.5 * 2**attempt, 5.0))
        steps[name]["state"] = "failed"
        raise JobFailed(error)

    async def _load(self, run_id: str) -> dict[str, Any]:
        async with self._database.connection() as conn:
            cur = await conn.execute(
                named_queries("propylon.runs")["get_run_for_worker"], {"run_id": run_id}
            )
            row = await cur.fetchone()
        if row is None:
            raise JobFailed(f"run {run_id} does not exist")
        return dict(row)

    async def _save(
        self,
        run_id: str,
        state: str,
        steps: dict[str, Any] | list[dict[str, Any]],
        output: str | None,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        async with self._database.connection() as conn:
            await conn.execute(
                named_queries("propylon.runs")["update_run"],
                {
                    "run_id": run_id,
                    "state": state,
                    # What a model or a tool answered is kept whatever it holds: a NUL (or a
                    # lone surrogate) escaped, never a run failed by the database.
                    "steps": Jsonb(storable_json(steps)),
                    "output": escape_unstorable(output) if output is not None else None,
                    "result": Jsonb(storable_json(result)) if result is not None else None,
                    "error": escape_unstorable(error) if error is not None else None,
                },
            )

    async def _finish(
        self,
        run_id: str,
        log: RunEventLog,
        state: str,
        steps: dict[str, Any] | list[dict[str, Any]],
        result: dict[str, Any] | None,
        error: str | None,
    ) -> None:
        for step in steps.values() if isinstance(steps, dict) else steps:
            if step["state"] == "running":  # the step in flight ends with its run
                step["state"] = state
        # The terminal event is written before the terminal state: a follower that sees the
        # state ended reads the log once more and so can never miss the last event.
        data: dict[str, Any] = {"result": result}
        if error:
            data = {"error": error, **({"result": result} if result else {})}
        await log.append(f"run_{state}", data)
        await self._save(run_id, state, steps, None, result, error)


def _step_attributes(step: dict[str, Any]) -> dict[str, Any]:
    return {"propylon.run.step": str(step["name"]), "propylon.run.step_kind": str(step["kind"])}


def _given(value: Any, default: float) -> Any:
    return default if value is None else value
