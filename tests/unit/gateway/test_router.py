from __future__ import annotations

from propylon.gateway.circuit_breaker import CircuitBreaker
from propylon.gateway.router import Deployment, Router
from propylon.settings import DeploymentConfig, ModelConfig


def model(strategy: str, weights: list[float]) -> tuple[ModelConfig, list[Deployment[str]]]:
    configs = [
        {"provider": "openai", "base_url": "http://x", "name": f"d{i}", "weight": w}
        for i, w in enumerate(weights)
    ]
    m = ModelConfig.model_validate({"name": "m", "strategy": strategy, "deployments": configs})
    deployments = [
        Deployment(DeploymentConfig.model_validate(c), f"d{i}", CircuitBreaker())
        for i, c in enumerate(configs)
    ]
    return m, deployments


def names(order: list[Deployment[str]]) -> list[str]:
    return [d.name for d in order]


def test_fallback_keeps_the_configured_order() -> None:
    m, ds = model("fallback", [1, 1, 1])
    assert names(Router(lambda: 0.99).order(m, ds)) == ["d0", "d1", "d2"]


def test_weighted_picks_by_weight_and_keeps_the_rest_as_fallbacks() -> None:
    m, ds = model("weighted", [1, 3])
    assert names(Router(lambda: 0.1).order(m, ds)) == ["d0", "d1"]
    assert names(Router(lambda: 0.5).order(m, ds)) == ["d1", "d0"]


def test_weighted_share_follows_weights() -> None:
    import random

    m, ds = model("weighted", [1, 3])
    rng = random.Random(7)
    router = Router(rng.random)
    firsts = [router.order(m, ds)[0].name for _ in range(4000)]
    share = firsts.count("d1") / len(firsts)
    assert 0.72 < share < 0.78
