"""A fake upstream LLM server speaking OpenAI's and Anthropic's wire formats.

Shipped so that Propylon's tests and benchmarks, and its users' own tests, can exercise a
gateway against deterministic answers, tunable pacing and injected faults::

    async with FakeUpstream(Behaviour(completion_tokens=8)) as upstream:
        client = openai.AsyncOpenAI(base_url=upstream.base_url + "/v1", api_key="x")
        ...
        upstream.set_behaviour(Behaviour(faults=(Fault(kind="status", status=503, times=2),)))
"""

from propylon.testing.behaviour import Behaviour, Fault, FaultKind, ScriptedCall, ScriptedTurn
from propylon.testing.server import (
    OVERRIDE_HEADER,
    FakeUpstream,
    RecordedRequest,
    run_fake_upstream,
)

__all__ = [
    "OVERRIDE_HEADER",
    "Behaviour",
    "FakeUpstream",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "ScriptedCall",
    "ScriptedTurn",
    "run_fake_upstream",
]
