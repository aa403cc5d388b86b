"""Prompt-injection defences: detection (heuristics + an offline classifier), the guard stage
of the request path, canary tokens and output checks. Start at ``detector.py`` (the
``scan(text, source) -> Verdict`` API) and ``guarded.py`` (the request-path layer)."""
