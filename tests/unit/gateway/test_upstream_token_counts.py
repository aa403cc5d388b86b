"""An upstream's token counts become ours in one place: a count that is not an int in
0..2**31-1 (the integer columns) is unknown, never negative, never past the column."""

from __future__ import annotations

import pytest

from propylon.gateway.providers.anthropic_translation.answers import openai_usage
from propylon.gateway.usage import MAX_TOKENS, token_count, upstream_usage


@pytest.mark.parametrize("value", [0, 1, 1000, MAX_TOKENS])
def test_a_count_in_the_column_range_is_kept(value: int) -> None:
    assert token_count(value) == value


@pytest.mark.parametrize("value", [-1, -1_000_000, MAX_TOKENS + 1, 2**62, True, 1.5, "7", None])
def test_a_negative_huge_or_non_int_count_is_unknown(value: object) -> None:
    assert token_count(value) is None


def test_sane_usage_is_kept_with_its_total_recomputed() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": -3}
    assert upstream_usage(usage) == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
    }


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": -1_000_000, "completion_tokens": 5},
        {"prompt_tokens": 10, "completion_tokens": 2**62},
        {"prompt_tokens": MAX_TOKENS, "completion_tokens": 1},
        {"completion_tokens": 5},
        {},
        None,
        [1, 2],
    ],
)
def test_usage_with_an_insane_or_missing_count_is_unknown(usage: object) -> None:
    assert upstream_usage(usage) is None


def test_an_insane_cached_count_is_dropped_and_a_sane_one_capped_at_the_prompt() -> None:
    bad = upstream_usage(
        {
            "prompt_tokens": 10,
            "completion_tokens": 1,
            "prompt_tokens_details": {"cached_tokens": -4},
        }
    )
    assert bad is not None and bad["prompt_tokens_details"] == {}
    big = upstream_usage(
        {
            "prompt_tokens": 10,
            "completion_tokens": 1,
            "prompt_tokens_details": {"cached_tokens": 99},
        }
    )
    assert big is not None and big["prompt_tokens_details"] == {"cached_tokens": 10}


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": -1_000_000, "output_tokens": 3},
        {"input_tokens": 3, "output_tokens": -5},
        {"input_tokens": 2**62, "output_tokens": 3},
    ],
)
def test_an_anthropic_usage_with_an_insane_count_translates_to_unknown(usage: object) -> None:
    assert openai_usage(usage) == {}
    assert upstream_usage(openai_usage(usage)) is None


def test_an_insane_anthropic_cache_count_counts_as_none() -> None:
    usage = {"input_tokens": 4, "output_tokens": 3, "cache_read_input_tokens": -100}
    assert openai_usage(usage)["prompt_tokens"] == 4
