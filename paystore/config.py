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


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = (env.get(name) or "").strip().lower() or default
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}")
    return raw


TAX_BEHAVIORS = ("exclusive", "inclusive")


def webhook_headroom(connections: int) -> int:
    """Connections kept from checkouts for webhooks, the buyer's return, reads and health checks."""
    return max(2, connections // 8)


def threads_from_env(env: Mapping[str, str] | None = None) -> int:
    """PAYSTORE_THREADS: gunicorn.conf.py reads it too, so threads and pool always agree."""
    return _int(os.environ if env is None else env, "PAYSTORE_THREADS", Settings.threads, 1)


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
    # Requests served at once per process (gunicorn threads, or greenlets under gevent). Idle
    # threads cost little; what is scarce is the database's connections (below).
    threads: int = 128
    # Connections this process may hold (0: its share of what the server allows, read at start:
    # max_connections, less the reserved ones and `db_reserved`, split over `db_processes`).
    # A checkout holds one across the Stripe call, so this is what admits checkouts.
    db_connections: int = 0
    db_processes: int = 1  # processes sharing the server (gunicorn sets its worker count)
    db_reserved: int = 10  # connections left for everything else: the CLI, the deliverer, cron, admins
    # In-flight checkouts allowed per process (0: the connections less the webhooks' headroom).
    # A checkout beyond them is answered 503 `overloaded` at once, instead of waiting for a
    # connection that webhooks, reads and health checks need.
    checkout_slots: int = 0
    # The shop's page the buyer's return redirects to (None: paystore's own result page).
    return_url: str | None = None
    # Where notifications are POSTed, and the secrets that sign them (several during rotation).
    notify_url: str | None = field(default=None, repr=False)
    notify_secrets: tuple[str, ...] = field(default=(), repr=False)
    # Checkout features, for every program unless the program says otherwise (paystore programs).
    allow_promotion_codes: bool = False
    automatic_tax: bool = False  # Stripe Tax computes the tax from the buyer's address
    tax_behavior: str = "exclusive"  # with automatic tax: the price excludes tax (added) or includes it
    tax_code: str | None = None  # Stripe's product tax code; None: the account's default
    # The buyer: one Stripe Customer per user (receipts, saved details, one customer in the
    # Dashboard instead of a guest per checkout), the receipt sent to the email checkout was
    # given, an invoice for the payment, and the buyer's tax id (companies paying for staff).
    stripe_customers: bool = True
    receipt_email: bool = True
    invoice_creation: bool = False
    tax_id_collection: bool = False
    # Refund a payment Radar warns of (most such warnings become disputes, which cost a fee):
    # off by default, since it gives up a sale on a warning.
    refund_on_early_fraud_warning: bool = False
    # Stripe reads (the return page, refresh, reconcile) per second, shared by the `db_processes`
    # processes (Stripe limits the account, not a process), and how long a session just read is
    # answered from the purchase instead of asking Stripe again (budget.py).
    stripe_reads_per_second: float = 10.0
    stripe_read_fresh_s: float = 5.0

    @property
    def stripe_livemode(self) -> bool:
        """Whether the configured key talks to live mode; events must agree with it."""
        return self.stripe_secret_key.startswith(("sk_live_", "rk_live_"))

    def stripe_reads_per_process(self) -> float:
        """This process's share of the Stripe read budget: at least one a second (or the whole
        budget, if smaller), so that the return page and reconcile still make progress however
        many processes share it."""
        return max(min(1.0, self.stripe_reads_per_second), self.stripe_reads_per_second / self.db_processes)

    def checkout_limit(self, connections: int) -> int:
        """In-flight checkouts per process, given its connections: all but the webhooks' headroom."""
        return self.checkout_slots or max(1, connections - webhook_headroom(connections))

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
            threads=threads_from_env(env),
            db_connections=_int(env, "PAYSTORE_DB_CONNECTIONS", defaults.db_connections, 0),
            db_processes=_int(env, "PAYSTORE_DB_PROCESSES", defaults.db_processes, 1),
            db_reserved=_int(env, "PAYSTORE_DB_RESERVED", defaults.db_reserved, 0),
            checkout_slots=_int(env, "PAYSTORE_CHECKOUT_SLOTS", defaults.checkout_slots, 0),
            return_url=env.get("PAYSTORE_RETURN_URL") or None,
            notify_url=env.get("PAYSTORE_NOTIFY_URL") or None,
            notify_secrets=_split_list(env.get("PAYSTORE_NOTIFY_SECRET")),
            allow_promotion_codes=_bool(env, "PAYSTORE_ALLOW_PROMOTION_CODES", defaults.allow_promotion_codes),
            automatic_tax=_bool(env, "PAYSTORE_AUTOMATIC_TAX", defaults.automatic_tax),
            tax_behavior=_choice(env, "PAYSTORE_TAX_BEHAVIOR", defaults.tax_behavior, TAX_BEHAVIORS),
            tax_code=env.get("PAYSTORE_TAX_CODE") or None,
            stripe_customers=_bool(env, "PAYSTORE_STRIPE_CUSTOMERS", defaults.stripe_customers),
            receipt_email=_bool(env, "PAYSTORE_RECEIPT_EMAIL", defaults.receipt_email),
            invoice_creation=_bool(env, "PAYSTORE_INVOICE_CREATION", defaults.invoice_creation),
            tax_id_collection=_bool(env, "PAYSTORE_TAX_ID_COLLECTION", defaults.tax_id_collection),
            refund_on_early_fraud_warning=_bool(env, "PAYSTORE_REFUND_ON_EARLY_FRAUD_WARNING",
                                                defaults.refund_on_early_fraud_warning),
            stripe_reads_per_second=_float(env, "PAYSTORE_STRIPE_READS_PER_SECOND", defaults.stripe_reads_per_second),
            stripe_read_fresh_s=_float(env, "PAYSTORE_STRIPE_READ_FRESH_S", defaults.stripe_read_fresh_s),
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
