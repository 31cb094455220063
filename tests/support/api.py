"""A bearer-authenticated JSON client for a running paystore."""

from __future__ import annotations

from typing import Any

import requests

from paystore.devtools.credentials import TOKEN


class Api:
    """A bearer-authenticated JSON client for a running paystore."""

    def __init__(self, base_url: str, token: str = TOKEN) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def post(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self.http.post(self.base_url + path, json=json, timeout=60, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(self.base_url + path, timeout=60, **kwargs)

    def checkout(self, user_id: str = "user_1", program_id: str = "prog_py101") -> requests.Response:
        return self.post("/checkout", {"user_id": user_id, "program_id": program_id})
