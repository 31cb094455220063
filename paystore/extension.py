"""What the app holds for its lifetime (`app.extensions["paystore"]`), and the typed way to read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask, current_app

if TYPE_CHECKING:  # only types: the routes import this module, and the factory imports the routes
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from paystore.api.admission import CheckoutSlots
    from paystore.config import Settings
    from paystore.stripe.budget import SharedReads
    from paystore.stripe.gateway import StripeGateway

EXTENSION = "paystore"


@dataclass(frozen=True)
class Paystore:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    gateway: StripeGateway
    checkout_slots: CheckoutSlots
    stripe_reads: SharedReads

    @classmethod
    def of(cls, app: Flask) -> Paystore:
        return app.extensions[EXTENSION]

    def install(self, app: Flask) -> None:
        app.extensions[EXTENSION] = self


def current_paystore() -> Paystore:
    """The extension of the app handling the current request or command."""
    return Paystore.of(current_app)
