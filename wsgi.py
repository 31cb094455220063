"""`gunicorn wsgi:app` (settings in gunicorn.conf.py)."""

from paystore import create_app, warn_about_missing_settings
from paystore.logs import configure_logging

configure_logging()
app = create_app()
warn_about_missing_settings(app)
