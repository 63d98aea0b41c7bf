"""Typed application keys shared by the route modules."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from helix.auth.sealing import Sealer
from helix.config import Settings
from helix.eventstore import EventStore

STORE = web.AppKey("store", EventStore)
POOL = web.AppKey("pool", asyncpg.Pool)
SETTINGS = web.AppKey("settings", Settings)
SEALER = web.AppKey("sealer", Sealer)
