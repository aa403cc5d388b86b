"""Fast pattern checks for prompt injection: microseconds per prompt, no model.

Five families of signals, each with a weight (how sure a hit alone makes us):

* ``instruction_override``: "ignore all previous instructions", "new instructions:", German
  "vergiss alles";
* ``role_play``: jailbreak personas and markers (DAN, "developer mode", "no restrictions");
* ``prompt_extraction``: attempts to make the model reveal its system prompt;
* ``encoded_payload``: readable text hidden in an encoding (base64, base32, hex, Ascii85,
  ROT13, Morse, Braille, … : ``decoding.py``) or in leetspeak; the decoded text is scanned
  again, so an encoded override counts as an override too;
* ``hidden_unicode``: invisible characters (zero width, Unicode tag characters that smuggle
  ASCII text) and bidirectional overrides that make text read differently than it renders.

Patterns are narrow on purpose: the NotInject benchmark is full of benign prompts that use
trigger words ("Can I ignore this warning?"), so a single word never fires a rule; a phrase
aimed at the model's instructions does.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from propylon.guard.decoding import payloads

FAMILIES = (
    "instruction_override",
    "role_play",
    "prompt_extraction",
    "encoded_payload",
    "hidden_unicode",
)


# Readable text hidden in an encoding (``decoding.py``) is weak evidence alone: developers
# paste base64 too. What it says is scanned again and counts as its own family's rule.
DECODED_TEXT = 0.3


@dataclass(frozen=True, slots=True)
class Signal:
    """One rule that fired: its family, how strongly it indicates injection, and where."""

    family: str
    rule: str
    weight: float
    evidence: str


_PRIOR = r"(?:all\s+|any\s+|the\s+|your\s+|my\s+|of\s+|these\s+|those\s+)*"
_BEFORE = r"(?:previous|prior|preceding|above|earlier|former|original|initial|old|system|given)"
_ORDERS = (
    r"(?:instructions?|prompts?|rules|directions?|directives?|guidelines|commands?|orders|"
    r"context|constraints|programming|tasks?|text|messages?|conversation)"
)

_RULES: dict[str, list[tuple[str, float, str]]] = {
    "instruction_override": [
        (
            "ignore_previous",
            0.95,
            rf"\b(?:ignore|disregard|forget|skip|override|bypass|drop|abandon|neglect)\s+"
            rf"{_PRIOR}(?:{_BEFORE}\s+)?(?:and\s+\w+\s+)?{_ORDERS}\b",
        ),
        (
            "forget_everything",
            0.9,
            r"\b(?:forget|ignore|disregard)\s+(?:about\s+)?(?:everything|all(?:\s+that)?|what)\s+"
            r"(?:(?:we|i|you)(?:'ve|\s+have)?\s+(?:talked|said|discussed|told)|"
            r"(?:was|that\s+was|i\s+said|you\s+were\s+told)\s*(?:before|above|earlier)?|"
            r"(?:before|above|previously|so\s+far))",
        ),
        (
            "ignore_the_above",
            0.85,
            r"\b(?:ignore|disregard|forget)\s+(?:all\s+(?:of\s+)?)?(?:the\s+|everything\s+)?"
            r"(?:above|before|previous(?:ly)?|prior)\b(?!\s+(?:\w+\s+)?(?:warning|error|step|"
            r"example|question|comment)s?\b)",
        ),
        (
            "new_instructions",
            0.8,
            r"\b(?:new|updated|real|actual|secret)\s+(?:instructions?|tasks?|assignment|orders|"
            r"rules)\s*(?::|follow|are|is)",
        ),
        (
            "now_new_tasks",
            0.85,
            r"\b(?:now|next)\s+(?:come|comes|follow|there\s+are)\s+(?:new|further|other)\s+"
            r"(?:tasks?|instructions?|assignments?)",
        ),
        (
            "from_now_on",
            0.6,
            r"\bfrom\s+now\s+on,?\s+(?:you\s+(?:are|will|must|shall|should)|respond|answer|act)",
        ),
        (
            "instead_say",
            0.55,
            r"\b(?:instead|rather),?\s+(?:just\s+)?(?:say|print|output|write|respond\s+with)\b",
        ),
        (
            "german_override",
            0.9,
            r"\b(?:vergiss|ignoriere|ignorieren\s+sie|vergessen\s+sie|missachte)\s+"
            r"(?:bitte\s+)?(?:alles|alle|die\s+(?:vorherigen|bisherigen|obigen)|"
            r"(?:deine|ihre)\s+(?:anweisungen|instruktionen|regeln))",
        ),
        (
            "german_said_before",
            0.8,
            r"\balle[sm]?\s+(?:zuvor|vorher|bisher|davor|oben)\s*(?:gesagte|geschriebene|"
            r"genannte)",
        ),
        (
            "german_new_tasks",
            0.85,
            r"\b(?:neue|weitere)\s+(?:anweisungen|aufgaben?|instruktionen)\b",
        ),
        (
            "stop_obey",
            0.7,
            r"\b(?:stop|cease)\s+(?:following|obeying)\s+(?:your|the|all)\b",
        ),
    ],
    "role_play": [
        ("dan", 0.9, r"\b(?:dan|stan|dude|aim)\s*(?:mode|prompt|jailbreak)\b|do\s+anything\s+now"),
        ("developer_mode", 0.85, r"\b(?:developer|god|debug|admin|sudo|jailbreak)\s+mode\b"),
        ("jailbreak_word", 0.35, r"\bjail\s*-?\s*break(?:en|ed|ing)?\b"),
        (
            "no_restrictions",
            0.75,
            r"\b(?:without|free\s+of|no|ignore\s+(?:all\s+)?(?:your|the))\s+(?:any\s+)?"
            r"(?:restrictions|filters?|censorship|limitations|guidelines|ethical\s+guidelines|"
            r"content\s+polic(?:y|ies)|moral\s+constraints)\b",
        ),
        (
            "unrestricted_persona",
            0.7,
            r"\b(?:pretend|act|behave|imagine)\s+(?:to\s+be|as(?:\s+if)?|like|that)\s+(?:you\s+"
            r"(?:are|were)\s+)?(?:an?\s+)?(?:unrestricted|unfiltered|uncensored|evil|rogue|"
            r"amoral|unethical)\b",
        ),
        (
            "no_longer_ai",
            0.75,
            r"\byou\s+are\s+(?:no\s+longer|not)\s+(?:an?\s+)?(?:ai|assistant|language\s+model|"
            r"chatgpt|bound)\b",
        ),
        ("stay_in_character", 0.5, r"\b(?:stay|remain)\s+in\s+character\b"),
    ],
    "prompt_extraction": [
        (
            "reveal_prompt",
            0.9,
            r"\b(?:reveal|print|show|display|output|repeat|tell\s+me|give\s+me|write\s+out|"
            r"leak|dump|share|list)\s+(?:me\s+)?(?:all\s+)?(?:of\s+)?(?:your|the)\s+"
            r"(?:(?:full|entire|complete|original|initial|hidden|secret|exact)\s+)*"
            r"(?:system\s+prompt|system\s+message|instructions|prompt|initial\s+prompt|"
            r"pre-?prompt|rules\s+you\s+were\s+given|password|secret\s+key)",
        ),
        (
            "what_instructions",
            0.7,
            r"\bwhat\s+(?:are|were|is)\s+your\s+(?:initial\s+|original\s+|system\s+|hidden\s+)*"
            r"(?:instructions|system\s+prompt|prompt|rules)\b",
        ),
        (
            "your_initial_instructions",
            0.6,
            r"\byour\s+(?:initial|original|hidden|secret|system)\s+(?:instructions|prompt|"
            r"rules|directives)\b",
        ),
        (
            "repeat_above",
            0.75,
            r"\b(?:repeat|print|output|spell\s*check|translate|summari[sz]e)\s+(?:all\s+)?"
            r"(?:of\s+)?(?:the\s+)?(?:text|words|everything|all)\s+(?:above|before)\b",
        ),
        (
            "german_reveal",
            0.85,
            r"\b(?:zeig|nenne|gib|wiederhole)\w*\s+(?:mir\s+)?(?:deine|ihre|den|die)\s+"
            r"(?:system-?prompt|anweisungen|instruktionen|passwort)",
        ),
    ],
}

_COMPILED = {
    family: [(name, weight, re.compile(pattern, re.IGNORECASE)) for name, weight, pattern in rules]
    for family, rules in _RULES.items()
}

# Words every match of a rule contains whole (mostly the words it can start with: the pattern
# opens with ``\b(?:word|…)`` followed by a space, a comma or a hyphen). An ASCII text none of
# whose words is listed cannot match the rule, so it is not run: most prompts contain none of
# these words, and running all 23 patterns costs 36 µs on a short prompt. ``dan`` ends in a
# whole word or is one word ("DANmode"), and its "do anything now" holds "anything" whole;
# ``german_reveal`` has "deine", "ihre", "den" or "die" between two spaces. A test checks that
# the filtered scan equals the full one on every text of the evaluation sets.
_DAN_PERSONAS = ("dan", "stan", "dude", "aim")
_DAN_ENDINGS = ("mode", "prompt", "jailbreak")
_TRIGGERS: dict[str, tuple[str, ...]] = {
    "dan": (
        *_DAN_ENDINGS,
        *(persona + ending for persona in _DAN_PERSONAS for ending in _DAN_ENDINGS),
        "anything",
    ),
    "german_reveal": ("deine", "ihre", "den", "die"),
    "ignore_previous": (
        "ignore",
        "disregard",
        "forget",
        "skip",
        "override",
        "bypass",
        "drop",
        "abandon",
        "neglect",
    ),
    "forget_everything": ("forget", "ignore", "disregard"),
    "ignore_the_above": ("ignore", "disregard", "forget"),
    "new_instructions": ("new", "updated", "real", "actual", "secret"),
    "now_new_tasks": ("now", "next"),
    "from_now_on": ("from",),
    "instead_say": ("instead", "rather"),
    "german_override": ("vergiss", "ignoriere", "ignorieren", "vergessen", "missachte"),
    "german_said_before": ("alle", "alles", "allem"),
    "german_new_tasks": ("neue", "weitere"),
    "stop_obey": ("stop", "cease"),
    "developer_mode": ("developer", "god", "debug", "admin", "sudo", "jailbreak"),
    "jailbreak_word": ("jail", "jailbreak", "jailbreaken", "jailbreaked", "jailbreaking"),
    "no_restrictions": ("without", "free", "no", "ignore"),
    "unrestricted_persona": ("pretend", "act", "behave", "imagine"),
    "no_longer_ai": ("you",),
    "stay_in_character": ("stay", "remain"),
    "reveal_prompt": (
        "reveal",
        "print",
        "show",
        "display",
        "output",
        "repeat",
        "tell",
        "give",
        "write",
        "leak",
        "dump",
        "share",
        "list",
    ),
    "what_instructions": ("what",),
    "your_initial_instructions": ("your",),
    "repeat_above": (
        "repeat",
        "print",
        "output",
        "spell",
        "spellcheck",
        "translate",
        "summarise",
        "summarize",
    ),
}
_RULE_LIST = [
    (family, name, weight, pattern)
    for family, rules in _COMPILED.items()
    for name, weight, pattern in rules
]
_ALWAYS = frozenset(i for i, rule in enumerate(_RULE_LIST) if rule[1] not in _TRIGGERS)
_BY_WORD: dict[str, frozenset[int]] = {}
for _index, (_family, _name, _weight, _pattern) in enumerate(_RULE_LIST):
    for _word in _TRIGGERS.get(_name, ()):
        _BY_WORD[_word] = _BY_WORD.get(_word, frozenset()) | {_index}
_LETTERS = re.compile(r"[a-z]+")

# Zero-width and other format characters that render as nothing.
_INVISIBLE = re.compile("[\u180e\u200b-\u200d\u2060-\u2064\u034f]")
# Byte-order marks and soft hyphens are everywhere in scraped text: removed, never counted.
_HARMLESS = re.compile("[\u00ad\ufeff]")
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_TAGS = re.compile("[\U000e0000-\U000e007f]+")
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)
_LEET_DIGIT = re.compile(r"[013457]")
# At a word's start: the word holds a leet digit and a word character that is not a digit.
_LEET_RUN = re.compile(r"\b(?=\w*[013457])(?=\w*[^\W\d])")
_LEETY_WORD = re.compile(r"\b\w*[a-z]\w*[013457@$]\w*\b|\b\w*[013457@$]\w*[a-z]\w*\b", re.I)


def strip_hidden(text: str) -> str:
    """``text`` without invisible, tag and bidirectional-control characters."""
    return _TAGS.sub("", _BIDI.sub("", _INVISIBLE.sub("", _HARMLESS.sub("", text))))


def scan(text: str) -> list[Signal]:
    """Every signal that fires on ``text``, its decoded payloads included."""
    if text.isascii():  # nothing hidden, nothing NFKC would change
        return _phrases(text) + _encoded(text)
    signals = _hidden_unicode(text)
    visible = unicodedata.normalize("NFKC", strip_hidden(text))
    signals += _phrases(visible)
    signals += _encoded(visible)
    return signals


def heuristic_score(signals: list[Signal]) -> float:
    """Combined confidence: 1 − Π(1 − weight), so independent signals reinforce each other."""
    remaining = 1.0
    for signal in signals:
        remaining *= 1.0 - signal.weight
    return 1.0 - remaining


def _phrases(text: str) -> list[Signal]:
    flat = " ".join(text.split())
    if flat.isascii():  # case-insensitive matching of non-ASCII text is not plain lower()
        chosen = set(_ALWAYS)
        for word in set(_LETTERS.findall(flat.lower())):
            chosen.update(_BY_WORD.get(word, ()))
        candidates = sorted(chosen)
    else:
        candidates = list(range(len(_RULE_LIST)))
    out: list[Signal] = []
    for index in candidates:
        family, name, weight, pattern = _RULE_LIST[index]
        match = pattern.search(flat)
        if match:
            out.append(Signal(family, name, weight, match.group(0)[:80]))
    return out


def _hidden_unicode(text: str) -> list[Signal]:
    out: list[Signal] = []
    tags = _TAGS.findall(text)
    if tags:
        smuggled = "".join(chr(ord(c) - 0xE0000) for run in tags for c in run if ord(c) >= 0xE0020)
        out.append(Signal("hidden_unicode", "tag_characters", 0.9, smuggled[:80]))
        out += [_decoded(s, "tag_payload") for s in _phrases(smuggled)]
    invisible = len(_INVISIBLE.findall(text))
    if invisible:
        # One stray zero-width joiner is common in emoji and Indic text; many are not.
        weight = 0.6 if invisible >= 3 else 0.3
        out.append(Signal("hidden_unicode", "invisible_characters", weight, f"{invisible} chars"))
    bidi = _BIDI.findall(text)
    if any(c in "\u202d\u202e" for c in bidi):
        out.append(Signal("hidden_unicode", "bidi_override", 0.8, f"{len(bidi)} controls"))
    elif bidi:
        out.append(Signal("hidden_unicode", "bidi_controls", 0.3, f"{len(bidi)} controls"))
    return out


def _decoded(signal: Signal, rule: str) -> Signal:
    return Signal("encoded_payload", rule, signal.weight, f"{signal.rule}: {signal.evidence}")


def _encoded(text: str) -> list[Signal]:
    out: list[Signal] = []
    for encoding, decoded in payloads(text):
        out.append(Signal("encoded_payload", "decoded_text", DECODED_TEXT, decoded[:80]))
        out += [_decoded(s, encoding) for s in _phrases(decoded) + _encoded_leet(decoded)]
    out += [_decoded(s, "leetspeak") for s in _encoded_leet(text)]
    return out


def _maybe_leet(text: str) -> bool:
    """False only when ``_LEETY_WORD`` cannot match: its digit forms need a word holding one of
    0 1 3 4 5 7 and a letter, its other forms an ``@`` or a ``$``. ``_LEETY_WORD`` costs
    10-20 µs on a short prompt (it backtracks at every word); this, 0.5-4 µs."""
    if "@" in text or "$" in text:
        return True
    return _LEET_DIGIT.search(text) is not None and _LEET_RUN.search(text) is not None


def _encoded_leet(text: str) -> list[Signal]:
    if not _maybe_leet(text) or not _LEETY_WORD.search(text):
        return []
    plain = _LEETY_WORD.sub(lambda m: m.group(0).lower().translate(_LEET), text)
    if plain == text:
        return []
    found = {(s.family, s.rule) for s in _phrases(text)}
    return [s for s in _phrases(plain) if (s.family, s.rule) not in found]
