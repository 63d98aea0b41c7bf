"""Typed application keys: the long-lived objects the route modules and the streams share."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from helix.auth.accounts import Accounts
from helix.auth.sealing import Sealer
from helix.auth.tokens import TokenVerifier
from helix.config import Settings
from helix.eventstore import EventStore
from helix.services import Services
from helix.webhooks.endpoints import Endpoints

STORE = web.AppKey("store", EventStore)
POOL = web.AppKey("pool", asyncpg.Pool)
SETTINGS = web.AppKey("settings", Settings)
SEALER = web.AppKey("sealer", Sealer)
ACCOUNTS = web.AppKey("accounts", Accounts)
VERIFIER = web.AppKey("token_verifier", TokenVerifier)
SERVICES = web.AppKey("services", Services)
ENDPOINTS = web.AppKey("webhook_endpoints", Endpoints)
