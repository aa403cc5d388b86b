"""The second check: a fitted judge refuses candidates that embeddings rate close but that
ask something else, and lets paraphrases through."""

from __future__ import annotations

import numpy as np
import pytest

from propylon.gateway.cache.pair_features import NAMES, VETO_COLUMNS, Text, features, veto
from propylon.gateway.cache.verifier import JudgeWeights, Verifier


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    return Verifier(JudgeWeights.load())


@pytest.mark.parametrize(
    ("question", "candidate"),
    [
        ("Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?"),
        ("Why doesn't my code compile?", "Why does my code compile?"),
        ("Transfer $200 from savings to checking", "Transfer $250 from savings to checking"),
        ("Transfer 20 from savings to checking", "Transfer 20 from checking to savings"),
        ("What is the capital of Peru?", "What is the capital of Chile?"),
        ("How do I open a new account?", "How do I close my account?"),
    ],
)
def test_refuses_questions_with_another_answer(
    verifier: Verifier, question: str, candidate: str
) -> None:
    assert verifier.refusal(question, candidate, 0.99) is not None, "whatever the cosine"


@pytest.mark.parametrize(
    ("question", "candidate", "similarity"),
    [
        ("How do I reverse a list in Python?", "How can I reverse a list in Python?", 0.97),
        ("What is the capital of France?", "What's the capital of France?", 0.96),
        ("I need twenty dollars sent to Bob", "I need 20 dollars sent to Bob", 0.93),
    ],
)
def test_lets_paraphrases_through(question: str, candidate: str, similarity: float) -> None:
    shipped = Verifier(JudgeWeights.load())
    assert shipped.refusal(question, candidate, 0.995) is None
    assert shipped.probability(question, candidate, similarity) > 0.3
    loosened = Verifier(JudgeWeights.load(), min_probability=0.3)
    assert loosened.refusal(question, candidate, similarity) is None


def test_features_read_numbers_names_negation_and_order() -> None:
    x = dict(
        zip(
            NAMES,
            features(
                Text.of("Why can't I send 20 euros to Anna from savings?"),
                Text.of("Why can I send twenty euros from Anna to savings?"),
                0.9,
            ),
            strict=True,
        )
    )
    assert x["closeness"] == pytest.approx(-np.log(0.1))
    assert x["numbers_differ"] == 0.0, "20 and twenty are one number"
    assert x["negation_differs"] == 1.0
    assert x["names_differ"] == 0.0
    assert x["content_jaccard"] == 1.0 and x["order_swapped"] == 1.0, "to Anna, from Anna"


def test_weights_round_trip_and_refuse_other_features(tmp_path: object) -> None:
    weights = JudgeWeights.load()
    again = JudgeWeights.from_json(weights.to_json())
    assert (
        np.allclose(again.coef, weights.coef) and again.min_probability == weights.min_probability
    )
    with pytest.raises(ValueError, match="rebuild"):
        JudgeWeights.from_json(b'{"features": ["similarity"]}')


def test_a_verdict_is_refused_below_a_tightened_entry_threshold_and_a_veto_at_any() -> None:
    shipped = Verifier(JudgeWeights.load())
    verdict = shipped.verdict("How do I reverse a list?", "How can I reverse a list?", 0.97)
    assert 0 < verdict.probability < 1 and not verdict.vetoed
    assert verdict.refusal(verdict.probability) is None
    raised = 1 - (1 - verdict.probability) / 4  # what a wrong sampled verdict leaves
    assert verdict.refusal(raised) == verdict.reason, "the same wording misses next time"
    vetoed = shipped.verdict("Is it safe?", "Is it not safe?", 0.99)
    assert (vetoed.probability, vetoed.vetoed) == (0.0, True)
    assert vetoed.refusal(0.0) == "negation_differs"


@pytest.mark.parametrize(
    ("question", "candidate", "differ"),
    [
        ("What does `append_column` do?", "What does `add_column` do?", True),
        ("What does my_table.append do?", "What does my_table.extend do?", True),
        ("How do I call `load_dataset(name)`?", "How do I call the load_dataset function?", False),
        ("What does getElementById return?", "What is returned by getElementById?", False),
    ],
)
def test_code_identifiers_count_as_names(question: str, candidate: str, differ: bool) -> None:
    x = features(Text.of(question), Text.of(candidate), 0.95)
    assert bool(x[NAMES.index("names_differ")]) is differ


def _differs(question: str, candidate: str, feature: str) -> bool:
    return bool(features(Text.of(question), Text.of(candidate), 0.95)[NAMES.index(feature)])


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("What is the capital of Peru?", {"peru"}),
        ("I moved. Then I asked Anna.", {"anna"}),  # a sentence's first word, and "I"
        ("British Nobel-Winning Author Doris Lessing Dies", set()),  # a headline
        ("Why did the U.S. Senate vote?", {"us", "senate"}),  # "U.S." is one name
    ],
)
def test_names_are_capitals_inside_a_sentence(text: str, names: set[str]) -> None:
    assert Text.of(text).names == names


def test_a_headline_and_its_sentence_case_name_the_same_things() -> None:
    assert not _differs(
        "Cuba's 'Ladies' to Pick Up EU Prize 8 Years Later",
        "Cuba's 'Ladies' to pick up EU prize 8 years later",
        "names_differ",
    )
    assert _differs("Who won in Peru?", "Who won in Chile?", "names_differ")


@pytest.mark.parametrize(
    ("question", "candidate", "differ"),
    [
        ("What opens on Wednesday?", "What opens on Thursday?", True),  # another weekday
        ("Is the west coast flooded?", "Is the east coast flooded?", True),
        ("Why is the light red?", "Why is the light green?", True),
        ("How do I stop the dog opening the fridge?", "How do I stop the dog closing it?", True),
        ("What opens on Wednesday?", "What opens Wednesday?", False),
        ("Why is the red light on?", "Why is the light on?", False),  # a value on one side
    ],
)
def test_other_values_of_one_kind_and_inflected_opposites_differ(
    question: str, candidate: str, differ: bool
) -> None:
    assert _differs(question, candidate, "opposite_words") is differ


def test_negations_are_counted_not_only_present() -> None:
    assert _differs(
        '"Being against nukes" does not mean "not wanting to use nukes".',
        '"Being against using nukes" means "not wanting to use nukes".',
        "negation_differs",
    )
    assert not _differs("Why can't I log in?", "Why am I not able to log in?", "negation_differs")


@pytest.mark.parametrize(
    ("question", "candidate"),
    [
        ("Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?"),
        ("Transfer $200 from savings to checking", "Transfer $250 from savings to checking"),
        ("Send 20 to Bob and 30 to Ann", "Send 30 to Bob and 20 to Ann"),
        ("Transfer 20 from savings to checking", "Transfer 20 from checking to savings"),
        ("What is the capital of Peru?", "What is the capital of Chile?"),
        ("How do I open a new account?", "How do I close my account?"),
        ("Is the shop open on Monday?", "Is the shop open on Tuesday?"),
        ("How do I reverse a list in Python?", "How can I reverse a list in Python?"),
        ("Say hello to request #00000123.", "Say hello to request #00000456."),
        ("What is the capital of France?", "What's the capital of France?"),
        ("Why is `foo()` slow?", "Why is `bar()` slow?"),
        ("Who wrote Hamlet?", "Who wrote Hamlet?"),
    ],
)
def test_the_veto_alone_is_the_first_veto_column_of_the_features(
    question: str, candidate: str
) -> None:
    a, b = Text.of(question), Text.of(candidate)
    x = features(a, b, 0.99)
    marked = [NAMES[c] for c in VETO_COLUMNS if x[c]]
    assert veto(a, b) == (marked[0] if marked else None)
    assert veto(b, a) == veto(a, b)  # symmetric, as the features are


def test_a_candidate_with_other_numbers_is_refused_on_its_words_alone() -> None:
    """Templated traffic: near candidates mostly differ by a number. The verifier decides
    those on the words' numbers (``Words``), without the rest of the reading; a pair whose
    numbers agree gets the full reading and the same verdict as before."""
    verifier = Verifier(JudgeWeights.load())
    question = "where do i find my w-2 form (ref #00000377)"
    for serial in range(378, 390):
        candidate = f"where do i find my w-2 form (ref #{serial:08d})"
        verdict = verifier.verdict(question, candidate, 0.99)
        assert verdict.vetoed and verdict.reason == "numbers_differ"
        assert verdict.reason == veto(Text.of(question), Text.of(candidate))
    assert verifier._texts.cache_info().currsize == 0, "no full reading was needed"
    same = verifier.verdict(question, question, 0.99)
    assert not same.vetoed and verifier._texts.cache_info().currsize == 1
