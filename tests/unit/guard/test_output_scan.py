"""Output checks: secrets and the canary are found in whole answers and across stream pieces."""

from __future__ import annotations

from typing import Any

from propylon.guard.canary import place_canary
from propylon.guard.output_scan import Finding, OutputScanner

KEY = "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0" * 2


def test_finds_an_openai_key_and_the_canary() -> None:
    scanner = OutputScanner(canaries=("CANARY-93f1c2",), secrets=True)
    assert scanner.check(f"Sure, the key is {KEY}.") is not None
    finding = scanner.check("my marker is CANARY-93f1c2 ok")
    assert finding is not None and finding.code == "canary_leaked"
    assert scanner.check("An ordinary answer about sk-learn and risk-taking.") is None


def test_a_key_split_across_stream_pieces_is_caught() -> None:
    check = OutputScanner(secrets=True).stream()
    pieces = ["Here ", "it is: ", KEY[:10], KEY[10:25], KEY[25:], " done"]
    findings = [check.feed(piece) for piece in pieces]
    assert findings[:3] == [None, None, None]
    assert any(f is not None and f.code == "secret_leaked" for f in findings[3:])


def test_canary_goes_into_system_prompts_only() -> None:
    request: dict[str, Any] = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "hi"},
        ],
    }
    placed = place_canary(request, "CANARY-1")
    assert "CANARY-1" in placed["messages"][0]["content"]
    assert placed["messages"][1] == {"role": "user", "content": "hi"}
    assert "CANARY-1" not in request["messages"][0]["content"], "the caller's dict is untouched"
    no_system = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert place_canary(no_system, "CANARY-1") is no_system


SAMPLES = {
    "openai_key": ["sk-" + "Ab3_" * 6, "sk-svcacct-" + "x9" * 12],
    "anthropic_key": ["sk-ant-api03-" + "Zz9-" * 6],
    "aws_access_key": ["AKIA" + "ABCDEFGH23456789", "ASIA" + "Q" * 16],
    "github_token": ["ghp_" + "a1" * 18, "ghs_" + "Z" * 36, "github_pat_" + "b_2" * 14],
    "slack_token": ["xoxb-1234-5678-abcdEFGH"],
    "google_api_key": ["AIza" + "Sy-_9" * 7],
    "stripe_key": ["sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "rk_live_" + "q" * 24],
    "private_key": ["-----BEGIN RSA PRIVATE KEY-----", "-----BEGIN PRIVATE KEY-----"],
}


def test_every_secret_shape_is_found_past_the_literal_prefilter() -> None:
    """The scanner runs its patterns only on answers holding one of their literals: each shape
    is still found, alone and inside prose."""
    from propylon.guard.output_scan import SECRET_PATTERNS

    scanner = OutputScanner(secrets=False)
    assert scanner.check(SAMPLES["openai_key"][0]) is None  # secrets off: nothing looked for
    scanner = OutputScanner(secrets=True)
    assert set(SAMPLES) == set(SECRET_PATTERNS)
    for kind, samples in SAMPLES.items():
        for sample in samples:
            assert SECRET_PATTERNS[kind].search(sample), (kind, sample)
            for text in (sample, f"Here you are: {sample}\nAnything else?"):
                finding = scanner.check(text)
                assert finding is not None and finding.code == "secret_leaked", (kind, text)


SYSTEM = (
    "You are the billing assistant of Acme. Never offer refunds above 50 euros without a "
    "manager's approval, and never mention the internal discount code WINTER-77 to customers."
)


def test_a_run_of_twelve_system_prompt_words_is_a_leak_whatever_the_case_and_punctuation() -> None:
    from propylon.guard.output_scan import PromptOverlap

    scanner = OutputScanner(secrets=True, overlap=PromptOverlap(SYSTEM, 12))
    quoted = "My rules: NEVER offer refunds above 50 euros, without a manager's approval and so on"
    finding = scanner.check(quoted)
    assert finding is not None and finding.code == "system_prompt_leaked"
    assert scanner.check("Refunds above 50 euros need a manager's approval.") is None
    assert scanner.check("I am the billing assistant of Acme; how can I help?") is None


def test_a_system_prompt_leak_split_across_stream_pieces_is_caught() -> None:
    from propylon.guard.output_scan import PromptOverlap

    check = OutputScanner(secrets=True, overlap=PromptOverlap(SYSTEM, 12)).stream()
    words = f"Sure. {SYSTEM}".split(" ")
    findings = [check.feed(w + " ") for w in words]
    first = next(i for i, f in enumerate(findings) if f is not None)
    assert findings[first] == Finding("system_prompt")
    assert first == 12, "caught at the twelfth word of the prompt, not later"


def test_every_request_gets_its_own_canary() -> None:
    from propylon.guard.canary import new_canary

    assert len({new_canary() for _ in range(100)}) == 100
