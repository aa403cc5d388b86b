"""The running parts of Propylon, built once by the composition root (``propylon.app``)."""

from __future__ import annotations

from dataclasses import dataclass

from propylon.db.database import Database
from propylon.gateway.service import Gateway
from propylon.settings import Settings


@dataclass(slots=True)
class Services:
    """Everything a route handler may call. Built by ``build_services``; never at import."""

    settings: Settings
    database: Database
    gateway: Gateway
