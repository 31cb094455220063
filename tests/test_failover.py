"""The database fails over: the primary crashes, its streaming replica is promoted.

Real servers from Debian's PostgreSQL (tests/support/pg_servers.py): a primary and a streaming
replica, paystore's gunicorn given both in one multi-host URL with
`target_session_attrs=read-write`, so that it finds the new primary without a restart.

The replica lags at the crash, as one does under load or across zones: it is cut off the WAL
stream after a first batch of checkouts has replicated, and the storm goes on:

- batch A, checked out before the lag and paid after it: pending on the new primary;
- batch C, checked out and paid after it, Stripe answered 2xx: gone from the new primary;
- batch D, checked out after it, paid, webhook not yet delivered at the crash: gone too.

With asynchronous replication the new primary has lost all of it while Stripe holds the money.
The healing paths run in the order production has them, and each heals a batch the earlier ones
cannot: Stripe's redelivery (recovery from the session's metadata) heals D; `paystore
reconcile`, on its schedule, heals A (it sees open purchases that exist, not missing ones);
`paystore events sync`, the failover runbook's step, heals C (Stripe answered 2xx for those, so it
will never redeliver them).

With synchronous replication the replica is not cut off (that would only stop every commit): the
primary crashes in the middle of a storm, with checkouts waiting on Stripe, commits in flight and
webhooks landing. A commit is acknowledged only once the replica has it, so every purchase a buyer
was answered for and every event Stripe was answered 2xx for is on the promoted replica, and no
healing path has anything to do. Its control is the asynchronous test: there the new primary lacks
purchases and events whose clients were answered (batch C).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from paystore.db import make_engine
from paystore.devtools.postgres import reset_database
from paystore.devtools.processes import wait_until
from paystore.devtools.standin import StripeStandIn
from paystore.migrate import upgrade_to_head
from tests.support import pg_servers
from tests.support.api import Api
from tests.support.database import count
from tests.support.processes import gunicorn_server, paystore_cli
from tests.support.storm import (
    Answers,
    checkout_until_answered,
    deliver_until_2xx,
    each_bought_once,
    nothing_half_made,
    storm_env,
)

pytestmark = [pytest.mark.no_db, pytest.mark.gunicorn, pytest.mark.timeout(600)]
BATCH = 6


@pytest.fixture(autouse=True)
def _servers_can_be_made() -> None:
    if reason := pg_servers.available():
        pytest.skip(reason)


@dataclass
class Cluster:
    primary: pg_servers.PgServer
    replica: pg_servers.PgServer

    @property
    def url(self) -> str:
        """What ops put in DATABASE_URL: both hosts, and only a writable one will do."""
        p, r = self.primary, self.replica
        return f"postgresql://postgres@{p.host}:{p.port},{r.host}:{r.port}/postgres?target_session_attrs=read-write"

    def caught_up(self) -> bool:
        return self.primary.sql(
            "SELECT bool_and(replay_lsn >= pg_current_wal_lsn()) FROM pg_stat_replication") == "t"

    def lag(self) -> None:
        """Cut the replica off its primary's WAL stream (what a saturated or partitioned link
        between zones does): from now on it falls behind by every commit. Taken away at the
        replica's end, once nothing is in flight: a stopped receiver would still find the WAL
        waiting in its socket and replay it at promotion."""
        self.replica.sql("ALTER SYSTEM SET primary_conninfo = ''")
        self.replica.sql("SELECT pg_reload_conf()")
        wait_until(lambda: self.primary.sql("SELECT count(*) FROM pg_stat_replication") == "0", timeout=30)

    def fail_over(self) -> None:
        """The primary crashes; the replica, as far as it got, is promoted."""
        self.primary.stop("immediate")
        self.replica.promote()


@contextmanager
def cluster(synchronous: bool) -> Iterator[Cluster]:
    with pg_servers.scratch() as root:
        primary = pg_servers.primary(root)
        try:
            upgrade_to_head(primary.url)
            replica = pg_servers.replica_of(primary, root)
            try:
                if synchronous:
                    primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'replica'")
                    primary.sql("SELECT pg_reload_conf()")
                    wait_until(lambda: primary.sql("SELECT sync_state FROM pg_stat_replication") == "sync", timeout=30)
                yield Cluster(primary, replica)
            finally:
                replica.stop("immediate")
        finally:
            primary.stop("immediate")


def _paid_event(stripe: StripeStandIn, purchase: dict[str, Any]) -> dict[str, Any]:
    return stripe.event("checkout.session.completed", stripe.settle(purchase["stripe_session_id"]))


def _outcomes(engine: Engine, outcome: str, buyers: list[str]) -> int:
    return count(engine, ("SELECT count(*) FROM stripe_events e JOIN purchases p ON p.id = e.purchase_id "
                          "WHERE e.outcome = :o AND p.user_id = ANY(:u)"), o=outcome, u=buyers)


def test_failover_async_mid_storm_every_paid_session_completes_once(stripe: StripeStandIn, tmp_path: Path) -> None:
    answers = Answers()
    batches = {name: [f"{name}_{n}" for n in range(BATCH)] for name in "ACD"}
    with cluster(synchronous=False) as db:
        engine = make_engine(db.url, pool_size=1, max_overflow=2)
        reset_database(engine)
        env = storm_env(db.url, stripe, 5)
        with gunicorn_server(env, workers=2, log_path=tmp_path / "gunicorn.log") as url, ThreadPoolExecutor(12) as pool:
            stripe.webhook_url = url + "/webhooks/stripe"
            api = Api(url)
            checked_out = {u: checkout_until_answered(api, u, answers.checkout) for u in batches["A"]}
            wait_until(db.caught_up, timeout=30)
            db.lag()

            def pair(user_id: str) -> None:
                purchase = checkout_until_answered(Api(url), user_id, answers.checkout)
                deliver_until_2xx(stripe, _paid_event(stripe, purchase), url, answers.webhook)

            def checkout_only(user_id: str) -> dict[str, Any]:
                return checkout_until_answered(Api(url), user_id, answers.checkout)

            storm: list[Future[Any]] = [
                *(pool.submit(deliver_until_2xx, stripe, _paid_event(stripe, checked_out[u]), url, answers.webhook)
                  for u in batches["A"]),
                *(pool.submit(pair, u) for u in batches["C"]),
            ]
            unanswered: dict[str, Future[dict[str, Any]]] = {u: pool.submit(checkout_only, u) for u in batches["D"]}
            for future in [*storm, *unanswered.values()]:
                future.result(timeout=120)
            db.fail_over()
            lost = _lost(engine, batches)

            # Stripe redelivers: the D webhooks land on the new primary, through the same
            # paystore, without a restart.
            redelivered = [pool.submit(_pay_and_deliver, stripe, f, url, answers) for f in unanswered.values()]
            for future in [*storm, *redelivered]:
                future.result(timeout=300)
            after_redelivery = _not_completed(engine, batches)
            reconcile = paystore_cli({**env, "DATABASE_URL": db.url}, "reconcile", "--older-than", "0s")
            after_reconcile = _not_completed(engine, batches)
            sync = paystore_cli({**env, "DATABASE_URL": db.url}, "events", "sync", "--since", "1h")
            assert sync.returncode == 0, sync.stdout + sync.stderr

        everyone = [u for names in batches.values() for u in names]
        each_bought_once(engine, everyone)
        nothing_half_made(engine)
        assert answers.beyond_retryable() == [], answers
        print(f"\nfailover (async): lost on the new primary {lost}; after redelivery {after_redelivery}, "
              f"after reconcile {after_reconcile}")
        # Acknowledged and lost: C's buyers were answered 201 and Stripe 2xx, and none of it is here.
        assert lost == {"A pending": BATCH, "C missing": BATCH, "D missing": BATCH}, lost
        # Redelivery heals D (rebuilt from metadata), not A or C: Stripe had its 2xx for those.
        assert after_redelivery == {"A": BATCH, "C": BATCH, "D": 0}, after_redelivery
        assert _outcomes(engine, "recovered", batches["D"]) == BATCH
        # Reconcile heals A, which exists here and is open; C is missing, so it cannot see it.
        assert reconcile.returncode == 3, reconcile.stdout + reconcile.stderr
        assert after_reconcile == {"A": 0, "C": BATCH, "D": 0}, after_reconcile
        # Events sync healed C from Stripe's own list of events.
        assert _outcomes(engine, "recovered", batches["C"]) == BATCH
        engine.dispose()


SYNC_BUYERS = 16


@dataclass
class Acknowledged:
    """What clients were answered: purchases (201/200 to the buyer) and events (2xx to Stripe)."""

    lock: threading.Lock
    purchases: dict[str, str]  # buyer -> purchase id
    events: dict[str, str]  # Stripe event id -> purchase id

    def snapshot(self) -> tuple[dict[str, str], dict[str, str]]:
        with self.lock:
            return dict(self.purchases), dict(self.events)


def test_failover_sync_crash_mid_storm_loses_nothing_a_client_was_answered(
    stripe: StripeStandIn, tmp_path: Path
) -> None:
    answers = Answers()
    acked = Acknowledged(threading.Lock(), {}, {})
    buyers = [f"S_{n}" for n in range(SYNC_BUYERS)]
    with cluster(synchronous=True) as db:
        engine = make_engine(db.url, pool_size=1, max_overflow=2)
        reset_database(engine)
        env = storm_env(db.url, stripe, 5)
        # Checkouts wait on Stripe with their transaction open, as at real latency: some are
        # in flight at the crash.
        stripe.faults.create_delay_s = 0.3
        with gunicorn_server(env, workers=2, log_path=tmp_path / "gunicorn.log") as url, \
                ThreadPoolExecutor(SYNC_BUYERS) as pool:
            stripe.webhook_url = url + "/webhooks/stripe"

            def pair(n: int, user_id: str) -> None:
                threading.Event().wait(0.15 * n)  # buyers arrive one after another: a storm, not a wall
                purchase = checkout_until_answered(Api(url), user_id, answers.checkout)
                with acked.lock:
                    acked.purchases[user_id] = purchase["purchase_id"]
                event = _paid_event(stripe, purchase)
                deliver_until_2xx(stripe, event, url, answers.webhook)
                with acked.lock:
                    acked.events[event["id"]] = purchase["purchase_id"]

            storm = [pool.submit(pair, n, u) for n, u in enumerate(buyers)]
            wait_until(lambda: len(acked.snapshot()[1]) >= 4, timeout=120, interval=0.02)
            purchases, events = acked.snapshot()  # answered before the crash (some later ones left out)
            in_flight = sum(not f.done() for f in storm)
            db.fail_over()
            for future in storm:
                future.result(timeout=300)

        assert in_flight >= SYNC_BUYERS // 4, f"only {in_flight} buyers were still in the storm at the crash"
        assert purchases and events
        on_new_primary = count(engine, "SELECT count(*) FROM purchases WHERE id::text = ANY(:ids)",
                               ids=list(purchases.values()))
        assert on_new_primary == len(purchases), f"{len(purchases) - on_new_primary} answered purchases are gone"
        recorded = count(engine, ("SELECT count(*) FROM stripe_events e JOIN purchases p ON p.id = e.purchase_id "
                                  "WHERE e.stripe_event_id = ANY(:ids) AND e.outcome = 'completed' "
                                  "AND p.status = 'completed'"), ids=list(events))
        assert recorded == len(events), f"{len(events) - recorded} events answered 2xx are gone or undone"
        each_bought_once(engine, buyers)
        nothing_half_made(engine)
        assert answers.beyond_retryable() == [], answers
        # Every purchase a webhook found was there: nothing was rebuilt from metadata.
        assert _outcomes(engine, "recovered", buyers) == 0
        reconcile = paystore_cli({**env, "DATABASE_URL": db.url}, "reconcile", "--older-than", "0s")
        assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr  # 0: nothing to repair
        print(f"\nfailover (sync): {len(purchases)} purchases and {len(events)} events answered before the crash, "
              f"{in_flight} buyers in flight; answers {sorted(set(answers.checkout + answers.webhook))}")
        engine.dispose()


def _pay_and_deliver(stripe: StripeStandIn, checkout: Future[dict[str, Any]], url: str, answers: Answers) -> None:
    deliver_until_2xx(stripe, _paid_event(stripe, checkout.result(timeout=300)), url, answers.webhook)


def _lost(engine: Engine, batches: dict[str, list[str]]) -> dict[str, int]:
    def present(users: list[str]) -> int:
        return count(engine, "SELECT count(*) FROM purchases WHERE user_id = ANY(:u)", u=users)

    return {
        "A pending": count(engine, "SELECT count(*) FROM purchases WHERE user_id = ANY(:u) AND status = 'pending'",
                           u=batches["A"]),
        "C missing": BATCH - present(batches["C"]),
        "D missing": BATCH - present(batches["D"]),
    }


def _not_completed(engine: Engine, batches: dict[str, list[str]]) -> dict[str, int]:
    return {name: BATCH - count(engine, "SELECT count(*) FROM purchases WHERE user_id = ANY(:u) AND status = 'completed'",
                                u=users) for name, users in batches.items()}

