"""`gunicorn wsgi:app` from the repository root (settings in gunicorn.conf.py)."""

from paystore.wsgi import app

__all__ = ["app"]
