"""Helpers shared by the tests, one module per concern:

    api.py                a bearer-authenticated client of a running paystore
    database.py           the test programs, table clean-up, and reading rows back
    locks.py              pg_locks probes, and the hook that delivers a webhook before checkout ends
    negative_controls.py  removing the lock, to show what it prevents
    processes.py          gunicorn and the `paystore` CLI as subprocesses, and in-process servers
    notifications.py      the signature check docs/notifications.md tells shops to make
    pg_servers.py         PostgreSQL servers the tests make themselves (a primary and its replica,
                          one in a network namespace) from Debian's binaries
    storm.py              storms of checkout-and-pay pairs against a served paystore, and their audit

PostgreSQL itself (testcontainers, the embedded server) and the stand-in are dev tools shared with
bench/ and `make serve`: paystore.devtools.
"""
