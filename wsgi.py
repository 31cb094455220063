"""`gunicorn wsgi:app` (settings in gunicorn.conf.py)."""

from paystore import create_app

app = create_app()
