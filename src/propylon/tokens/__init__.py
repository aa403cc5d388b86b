"""Offline token counting for prompts and chat requests."""

from propylon.tokens.counter import TokenCounter

__all__ = ["TokenCounter"]
