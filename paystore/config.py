"""Settings read from the environment (names fixed by docs/DESIGN.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any


class ConfigError(ValueError):
    """A setting is present but unusable; the message names the variable, never its value."""


def _split_list(raw: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (raw or "").split(",") if part.strip())


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything paystore reads from its environment.

    Secrets are excluded from repr() so that a logged or printed Settings never leaks them.
    """

    database_url: str | None = field(default=None, repr=False)
    stripe_secret_key: str = field(default="", repr=False)
    stripe_webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    stripe_api_base: str | None = None
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    success_url: str = "http://localhost:8000/checkout/return?session_id={CHECKOUT_SESSION_ID}"
    cancel_url: str = "http://localhost:8000/checkout/cancel"
    lock_timeout_ms: int = 10_000
    stripe_timeout_s: float = 10.0
    # A sync gunicorn worker serves one request at a time and a request uses one connection;
    # the spare one serves /metrics' database gauge and the failed-event record.
    db_pool_size: int = 2
    db_max_overflow: int = 2
    # The shop's page the buyer's return redirects to (None: paystore's own result page).
    return_url: str | None = None
    # Where notifications are POSTed, and the secrets that sign them (several during rotation).
    notify_url: str | None = field(default=None, repr=False)
    notify_secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def stripe_livemode(self) -> bool:
        """Whether the configured key talks to live mode; events must agree with it."""
        return self.stripe_secret_key.startswith(("sk_live_", "rk_live_"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            stripe_secret_key=env.get("STRIPE_SECRET_KEY", ""),
            stripe_webhook_secrets=_split_list(env.get("STRIPE_WEBHOOK_SECRET")),
            stripe_api_base=env.get("STRIPE_API_BASE") or None,
            api_tokens=_split_list(env.get("PAYSTORE_API_TOKENS")),
            success_url=env.get("PAYSTORE_SUCCESS_URL") or defaults.success_url,
            cancel_url=env.get("PAYSTORE_CANCEL_URL") or defaults.cancel_url,
            lock_timeout_ms=_int(env, "PAYSTORE_LOCK_TIMEOUT_MS", defaults.lock_timeout_ms, 1),
            stripe_timeout_s=_float(env, "PAYSTORE_STRIPE_TIMEOUT_S", defaults.stripe_timeout_s),
            db_pool_size=_int(env, "PAYSTORE_DB_POOL_SIZE", defaults.db_pool_size, 1),
            db_max_overflow=_int(env, "PAYSTORE_DB_MAX_OVERFLOW", defaults.db_max_overflow, 0),
            return_url=env.get("PAYSTORE_RETURN_URL") or None,
            notify_url=env.get("PAYSTORE_NOTIFY_URL") or None,
            notify_secrets=_split_list(env.get("PAYSTORE_NOTIFY_SECRET")),
        )

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        """Apply test or caller overrides given by field name; unknown names are an error."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        values = dict(overrides)
        for name in ("stripe_webhook_secrets", "api_tokens"):
            if isinstance(values.get(name), str):
                values[name] = _split_list(values[name])
        return replace(self, **values)
