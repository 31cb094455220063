"""`gunicorn wsgi:app` from the repository root reads this file: paystore's settings, which live
in the package (`gunicorn -c python:paystore.gunicorn_conf paystore.wsgi:app` where it is installed)."""

from paystore.gunicorn_conf import *  # noqa: F403 - gunicorn reads the settings and hooks by name
