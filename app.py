"""`flask --app app run` / `flask --app app programs list`: Flask finds `create_app` here."""

from paystore import create_app

__all__ = ["create_app"]
