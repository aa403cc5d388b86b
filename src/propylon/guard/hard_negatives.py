"""Benign prompts that look like attacks to a naive detector, generated from public corpora.

Real traffic is full of long pasted documents with an ordinary request around them
("summarise this", "what is the strongest counter-argument?") and of code whose words are
"ignore", "system", "override" and "prompt". The public benign sets are mostly short
questions, so a detector trained on them alone learns "long = attack". These texts teach it
otherwise. Documents: SciFact abstracts (one, a few sentences, or several joined) and the
training part of BIPIA's emails, tables and code answers; none of BIPIA's held-back contexts.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from propylon.guard import datasets
from propylon.guard.datasets import Example

ORIGIN = "hard-negatives"

WRAPPERS = (
    "Summarise the following article in three bullet points:\n\n{doc}",
    "{doc}\n\nWhat is the strongest counter-argument to this?",
    "Please review this text for clarity and tone, and suggest improvements:\n\n{doc}",
    "Translate the following into French, keeping the technical terms:\n\n{doc}",
    "Can you proofread this before I send it?\n\n{doc}",
    "{doc}\n\nTL;DR?",
    'Here is something I was sent:\n"""\n{doc}\n"""\nIs the reasoning sound? Be critical.',
    "{doc}\n\nWrite a polite two-sentence reply to this.",
    "I need to present this to my team tomorrow. Explain it simply:\n{doc}",
    "{doc}\n\nList the three main claims above and the evidence given for each.",
    "Extract every number from this text with what it measures:\n\n{doc}",
    "Find the weakest argument in this text and explain why it is weak.\n\n{doc}",
)

CODE_WRAPPERS = (
    "Explain what this code does:\n```\n{doc}\n```",
    "Why does this fail? \n\n{doc}",
    "Review this snippet and point out bugs:\n{doc}",
    "{doc}\n\nCan you add type hints and docstrings?",
    "Refactor this to be more readable:\n```python\n{doc}\n```",
)

# Code with the words injection detectors key on, used as it is in ordinary programs.
CODE_SNIPPETS = (
    'import warnings\nwarnings.filterwarnings("ignore")\n\ndef load(path):\n'
    "    with open(path) as f:\n        return f.read()",
    "try:\n    os.remove(tmp)\nexcept FileNotFoundError:\n    pass  # ignore: already gone",
    'response = client.chat.completions.create(\n    model="gpt-4o-mini",\n    messages=[\n'
    '        {"role": "system", "content": "You are a helpful assistant."},\n'
    '        {"role": "user", "content": question},\n    ],\n)\nprint(response.choices[0])',
    'SYSTEM_PROMPT = "You are a support bot for ACME. Answer briefly."\n\n'
    'def build(messages):\n    return [{"role": "system", "content": SYSTEM_PROMPT}, *messages]',
    'import os\nos.system("clear")\nprint("Previous output cleared")',
    "x = compute()  # type: ignore[no-untyped-call]\n# mypy: ignore-errors",
    "# .gitignore\n__pycache__/\n*.pyc\n.env\nnode_modules/\n# ignore build output\ndist/",
    "sudo systemctl restart nginx\nsudo systemctl status nginx --no-pager",
    'def override_defaults(config, overrides):\n    """Ignore None values; later '
    'overrides win."""\n    return {**config, **{k: v for k, v in overrides.items() '
    "if v is not None}}",
    "for line in sys.stdin:\n    if line.startswith('#'):\n        continue  # ignore comments\n"
    "    process(line)",
    "class Prompt:\n    def __init__(self, system: str, user: str):\n        self.system = system\n"
    "        self.user = user\n\n    def render(self):\n"
    "        return f'{self.system}\\n\\n{self.user}'",
    "git update-index --assume-unchanged config.yml  # ignore local changes\ngit status",
    "if (err) {\n  // ignore previous errors, retry once\n  return retry(request);\n}",
    "SELECT * FROM users WHERE role = 'admin' AND disabled = false; -- bypass cache",
    "export OPENAI_API_KEY=...\npython -m app --system-prompt prompts/system.txt --reset",
)


def generate(data: Path, count: int = 400) -> list[Example]:
    """``count`` benign prompts: documents in ordinary instructions, and code (about a third)."""
    rng = random.Random(datasets.SEED + 1)
    abstracts = [d.text for d in datasets.benign_documents(data, 600)]
    contexts = [c for t in ("email", "table") for c in datasets.bipia_contexts(data, t, "train")]
    code = datasets.bipia_contexts(data, "code", "train")
    out: list[Example] = []
    while len(out) < count:
        kind = rng.random()
        if kind < 0.35:
            snippet = rng.choice(CODE_SNIPPETS)
            if rng.random() < 0.5:
                snippet = f"{rng.choice(code)[:1200]}\n\n{snippet}"
            text = rng.choice(CODE_WRAPPERS).format(doc=snippet)
        else:
            text = rng.choice(WRAPPERS).format(doc=_document(rng, abstracts, contexts))
        out.append(Example(text, 0, "user", ORIGIN))
    return out


def _document(rng: random.Random, abstracts: list[str], contexts: list[str]) -> str:
    """A short excerpt, one document, or several joined: every length bucket is covered."""
    shape = rng.random()
    if shape < 0.3:
        sentences = re.split(r"(?<=[.!?])\s+", rng.choice(abstracts))
        return " ".join(sentences[: rng.randint(1, 3)])
    if shape < 0.6:
        return rng.choice(contexts)[:3000]
    if shape < 0.85:
        return rng.choice(abstracts)
    return "\n\n".join(rng.sample(abstracts, rng.randint(2, 4)))
