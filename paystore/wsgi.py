"""The WSGI app gunicorn serves: `gunicorn -c python:paystore.gunicorn_conf paystore.wsgi:app`."""

from paystore import create_app, warn_about_missing_settings
from paystore.logs import configure_logging

configure_logging()
app = create_app()
warn_about_missing_settings(app)
