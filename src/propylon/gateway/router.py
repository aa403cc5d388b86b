"""The order in which a model's deployments are tried."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from propylon.gateway.circuit_breaker import CircuitBreaker
from propylon.settings import DeploymentConfig, ModelConfig

A = TypeVar("A")


@dataclass(slots=True)
class Deployment(Generic[A]):
    """One upstream able to serve a model: its config, its adapter and its breaker."""

    config: DeploymentConfig
    adapter: A
    breaker: CircuitBreaker

    @property
    def name(self) -> str:
        return self.config.display_name


class Router:
    """``fallback`` keeps the configured order; ``weighted`` picks the first deployment at
    random by weight (load balancing) and keeps the others, in order, as fallbacks."""

    def __init__(self, rng: Callable[[], float] = random.random) -> None:
        self._rng = rng

    def order(
        self, model: ModelConfig, deployments: Sequence[Deployment[A]]
    ) -> list[Deployment[A]]:
        if model.strategy == "fallback" or len(deployments) < 2:
            return list(deployments)
        total = sum(d.config.weight for d in deployments)
        point = self._rng() * total
        for index, deployment in enumerate(deployments):
            point -= deployment.config.weight
            if point < 0:
                return [deployment, *deployments[:index], *deployments[index + 1 :]]
        return list(deployments)
