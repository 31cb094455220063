"""gunicorn config for the partition test's negative control ONLY: the project's own settings, with
the purchase lock taken without its transaction-local idle bound in every worker."""

from paystore import gunicorn_conf
from paystore.gunicorn_conf import *  # noqa: F403 - the real settings, unchanged


def post_worker_init(worker):  # noqa: ANN001, ANN201
    from paystore.store import locks

    gunicorn_conf.post_worker_init(worker)
    locks._LOCK = "SELECT set_config('lock_timeout', %(t)s, true), %(i)s::text, pg_advisory_xact_lock(%(k)s)"
