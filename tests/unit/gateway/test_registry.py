"""Public model names: resolved by name or alias, refused with a message that helps."""

from __future__ import annotations

import pytest

from propylon.errors import ModelNotFound
from propylon.gateway.registry import ModelRegistry
from propylon.settings import ModelConfig

MODELS = [
    ModelConfig.model_validate(
        {"name": "chat-a", "aliases": ["a"], "deployments": [{"provider": "openai"}]}
    ),
    ModelConfig.model_validate(
        {"name": "embed-b", "kind": "embeddings", "deployments": [{"provider": "openai"}]}
    ),
]


def test_a_chat_model_asked_for_embeddings_is_refused_in_plain_english() -> None:
    with pytest.raises(ModelNotFound) as caught:
        ModelRegistry(MODELS).resolve("chat-a", kind="embeddings")
    assert "is not an embeddings model here. Configured embeddings models: embed-b." in (
        caught.value.message
    )
    with pytest.raises(ModelNotFound, match="is not a chat model here"):
        ModelRegistry(MODELS).resolve("embed-b", kind="chat")


def test_find_takes_any_kind_by_name_or_alias() -> None:
    registry = ModelRegistry(MODELS)
    assert registry.find("a").name == "chat-a"
    assert registry.find("embed-b").kind == "embeddings"
    with pytest.raises(ModelNotFound, match="Configured models: chat-a, embed-b"):
        registry.find("nope")
