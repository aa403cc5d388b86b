"""Public model names (and aliases) mapped to their configuration."""

from __future__ import annotations

from collections.abc import Iterable

from propylon.errors import ModelNotFound
from propylon.settings import ModelConfig

_ARTICLE = {"chat": "a", "embeddings": "an", "rerank": "a"}


class ModelRegistry:
    """Looks up a configured model by public name or alias."""

    def __init__(self, models: Iterable[ModelConfig]) -> None:
        self._models: list[ModelConfig] = list(models)
        self._by_name: dict[str, ModelConfig] = {}
        for model in self._models:
            for name in (model.name, *model.aliases):
                if name in self._by_name:
                    raise ValueError(f"model name configured twice: {name!r}")
                self._by_name[name] = model

    @property
    def models(self) -> list[ModelConfig]:
        return list(self._models)

    def find(self, name: str) -> ModelConfig:
        """The model ``name`` names (or aliases), of any kind; ``ModelNotFound`` otherwise."""
        model = self._by_name.get(name)
        if model is None:
            known = ", ".join(m.name for m in self._models) or "none"
            raise ModelNotFound(
                f"The model `{name}` does not exist. Configured models: {known}.", param="model"
            )
        return model

    def resolve(self, name: str, *, kind: str = "chat") -> ModelConfig:
        model = self._by_name.get(name)
        if model is None or model.kind != kind:
            known = ", ".join(m.name for m in self._models if m.kind == kind) or "none"
            raise ModelNotFound(
                f"The model `{name}` does not exist or is not {_ARTICLE[kind]} {kind} model "
                "here. "
                f"Configured {kind} models: {known}.",
                param="model",
            )
        return model
