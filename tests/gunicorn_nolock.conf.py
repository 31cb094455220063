"""gunicorn config for the cross-process negative control ONLY: the project's own settings,
plus a hook that turns paystore's advisory lock into a no-op in every worker."""

from pathlib import Path

_config = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"
exec(compile(_config.read_text(), str(_config), "exec"))  # noqa: S102 - the real config, unchanged


_project_post_worker_init = post_worker_init  # noqa: F821 - defined by the exec above


def post_worker_init(worker):  # noqa: ANN001, ANN201
    from paystore import locks

    _project_post_worker_init(worker)
    locks.take_xact_lock = lambda db, key, timeout_ms: 0.0
