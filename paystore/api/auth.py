"""Bearer-token check for every route except the webhook and the health probes."""

from __future__ import annotations

import hmac

from flask import request

from paystore.api.errors import ApiError
from paystore.extension import current_paystore


def require_token() -> None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    tokens = current_paystore().settings.api_tokens
    # Compared with every token in constant time: timing does not reveal which one matched.
    matches = [hmac.compare_digest(token.encode(), t.encode()) for t in tokens]
    if scheme.lower() != "bearer" or not token or not any(matches):
        raise ApiError(401, "unauthorized", "missing or invalid bearer token")
