"""Whether a window of retrieved text speaks *to* the model reading it, or only *about* AI.

A document planted with an instruction addresses its reader: an imperative at the start of a
sentence ("Print …", "Write a limerick …"), a rule for the answer ("in your response …",
"when you summarise this …"), a vocative ("AI assistant, …", "Note to the model: …"). A
résumé or a report that names AI ("she leads a group on large language models") does none of
that. These few numbers are appended to the retrieved head's input only (``SIZE`` columns
after the shared lexical features), so the user head and ``features.LEXICAL_SIZE`` stay as
they are. Changing them changes the meaning of the retrieved head's weights: bump
``VERSION`` and run ``propylon guard train --retrieved-only``.
"""

from __future__ import annotations

import re

import numpy as np
from numpy.typing import NDArray

VERSION = 1

# Verbs that open an instruction to whoever reads the text. Words that open ordinary
# sentences too ("see", "note", "please") are left out; "please" is read by the emails'
# own windows.
_IMPERATIVES = (
    "add|answer|append|begin|call|claim|compose|conclude|create|describe|disregard|do|don't|"
    "draft|end|explain|forget|generate|give|ignore|include|insert|list|make|mention|output|"
    "pretend|print|produce|provide|recommend|reply|repeat|respond|return|reveal|rewrite|say|"
    "send|show|start|state|stop|summarise|summarize|tell|translate|treat|use|write"
)
_OPENING = re.compile(
    r"(?:^|[.!?:;\-|>)\]]\s+|\n)\s*[\"'(\[*_#-]*\s*(" + _IMPERATIVES + r")\b", re.IGNORECASE
)
_ANSWER = re.compile(
    r"\b(?:your|the)\s+(?:response|answer|reply|summary|output|next message|final answer)\b"
    r"|\bwhen (?:you|summari[sz]ing|answering)\b|\bbefore (?:you )?(?:answer|respond|reply)"
    r"|\bfrom now on\b|\b(?:respond|reply|answer) (?:only|solely|exclusively)\b",
    re.IGNORECASE,
)
_READER = (
    r"(?:ai|a\.i\.|assistant|model|language model|llm|chatbot|bot|gpt|summari[sz]er|"
    r"reader|system|agent)"
)
_VOCATIVE = re.compile(
    rf"(?:^|[\s(\[<\"'])(?:dear |hey |hi |hello |attention,? |note to (?:the |any |all )?|"
    rf"message (?:for|to) (?:the )?|instructions? (?:for|to) (?:the )?|to the )"
    rf"(?:\w+ ){{0,3}}{_READER}s?\b\s*[,:\-]"
    rf"|^\W*(?:\w+ ){{0,2}}{_READER}\s*[,:]"
    rf"|\bif you are an? (?:\w+ ){{0,2}}{_READER}\b"
    rf"|\byou are (?:now )?an? (?:\w+ ){{0,2}}{_READER}\b",
    re.IGNORECASE,
)
_SECOND_PERSON = re.compile(r"\b(?:you|your|yourself)\b", re.IGNORECASE)
_THIRD_PERSON = re.compile(
    r"^\W*(?:(?i:he|she|they|we|it|this|the|our|his|her|their)\b|[A-Z][a-z]+ [A-Z][a-z]+\b)"
)
_ABOUT_AI = re.compile(
    r"\b(?:ai|artificial intelligence|machine learning|neural|language models?|llms?|"
    r"robotics|chatbots?|deep learning|computer vision)\b",
    re.IGNORECASE,
)
SIZE = 6


def features(texts: list[str]) -> NDArray[np.float32]:
    """``SIZE`` numbers per window: an instruction opens a sentence, a rule for the answer, a
    vocative to the model, second person, a third-person opening, and AI named."""
    out = np.zeros((len(texts), SIZE), dtype=np.float32)
    for row, text in enumerate(texts):
        out[row, 0] = min(len(_OPENING.findall(text)), 2) / 2.0
        out[row, 1] = float(bool(_ANSWER.search(text)))
        out[row, 2] = float(bool(_VOCATIVE.search(text)))
        out[row, 3] = min(len(_SECOND_PERSON.findall(text)), 3) / 3.0
        out[row, 4] = float(bool(_THIRD_PERSON.match(text)))
        out[row, 5] = float(bool(_ABOUT_AI.search(text)))
    return out
