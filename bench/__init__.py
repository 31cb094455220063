"""`make bench`: paystore's capacity beside its baselines (bench/__main__.py says what it runs)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository: gunicorn serves wsgi:app from here
