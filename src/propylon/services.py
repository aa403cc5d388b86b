"""The running parts of Propylon, built once by the composition root (``propylon.app``)."""

from __future__ import annotations

from dataclasses import dataclass

from propylon.db.database import Database
from propylon.gateway.protocol import ChatService, EmbeddingService
from propylon.gateway.service import Gateway
from propylon.settings import Settings


@dataclass(slots=True)
class Services:
    """Everything a route handler may call. Built by ``build_services``; never at import.

    ``chat`` and ``embeddings`` are the outermost layers of the request path (the gateway
    wrapped by limits, cache, guard and the request log); routes call those, never
    ``gateway`` directly.
    """

    settings: Settings
    database: Database
    gateway: Gateway
    chat: ChatService
    embeddings: EmbeddingService
