"""The deliverer: signed POSTs to a real test shop, at least once across a shop outage and a
SIGKILL mid-send, each row once when two deliverers run (negative control: without SKIP LOCKED
and the lease, both send it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask
from sqlalchemy import Engine, select, text

from paystore.devtools.credentials import TOKEN
from paystore.devtools.http import free_port
from paystore.devtools.processes import wait_until
from paystore.devtools.shop import PretendShop
from paystore.domain import lifecycle
from paystore.domain.purchase import PaymentFact, Purchase
from paystore.extension import Paystore
from paystore.models import NotificationRow
from paystore.services.notifications import delivery, signing
from paystore.store import notifications, purchases
from tests.support.database import count
from tests.support.notifications import verify_as_the_docs_say as verify
from tests.support.processes import ROOT, paystore_cli

SECRET = "notify_secret_test_91c5"


@pytest.fixture
def shop() -> Iterator[PretendShop]:
    shop = PretendShop().serve()
    yield shop
    shop.stop()


@pytest.fixture
def notify_env(cli_env: dict[str, str], shop: PretendShop) -> dict[str, str]:
    return {**cli_env, "PAYSTORE_NOTIFY_URL": shop.notifications_url, "PAYSTORE_NOTIFY_SECRET": SECRET}


def completed_purchases(app: Flask, n: int) -> list[str]:
    """n purchases completed through the lifecycle code; returns their notification ids."""
    factory = Paystore.of(app).session_factory
    ids = [uuid.uuid4() for _ in range(n)]
    with factory() as db:
        with db.begin():
            for i, purchase_id in enumerate(ids):
                purchases.write(db, purchases.new(Purchase.pending(
                    id=purchase_id, user_id=f"user_n{i}", program_id="prog_py101", amount=4900, currency="usd",
                    livemode=False)))
        with db.begin():
            for purchase_id in ids:
                tracked = purchases.load(db, purchase_id)
                lifecycle.apply(tracked.purchase, lambda p: setattr(p, "payment", PaymentFact.PAID), cause="test")
                purchases.write(db, tracked)
        with db.begin():
            return [str(i) for i in db.scalars(select(NotificationRow.id).order_by(NotificationRow.created_at))]


def row(engine: Engine, notification_id: str) -> dict:
    with engine.connect() as conn:
        found = conn.execute(
            # `not_due_soon`: still not due in 10 s, so a CLI started next (a second or two) finds
            # it not due; full jitter may also pick a shorter delay.
            text("SELECT *, next_attempt_at > now() AS later, next_attempt_at > now() + interval '10 seconds'"
                 " AS not_due_soon FROM notifications WHERE id = :i"),
            {"i": notification_id},
        ).one()
    return dict(found._mapping)


def make_due(engine: Engine) -> None:
    """Stand in for the passing of time (backoff or lease), instead of sleeping through it."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE notifications SET next_attempt_at = now() WHERE delivered_at IS NULL"))


def deliver_in_process(app: Flask, url: str, secrets: tuple[str, ...] = (SECRET,)) -> delivery.DeliveryRun:
    with Paystore.of(app).session_factory() as db:
        return delivery.deliver_due(db, url, secrets)


def paystore_process(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    exe = Path(sys.executable).with_name("paystore")
    return subprocess.Popen([str(exe), *args], cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_shop_gets_the_body_and_headers_and_the_signature_verifies(
    live_app: Flask, shop: PretendShop, engine: Engine
) -> None:
    [nid] = completed_purchases(live_app, 1)

    run = deliver_in_process(live_app, shop.notifications_url)

    assert (run.delivered, run.failed) == (1, 0)
    [got] = shop.received
    assert got.notification_id == nid == got.json["id"]
    assert got.content_type == "application/json"
    assert got.body.decode() == row(engine, nid)["body"]
    assert verify(got.body, got.signature, SECRET)
    assert not verify(got.body, got.signature, "wrong_secret")
    assert not verify(got.body.replace(b"completed", b"refunded"), got.signature, SECRET)
    stale = signing.signature_header(got.body, (SECRET,), int(time.time()) - 3600)
    assert not verify(got.body, stale, SECRET)
    assert row(engine, nid)["delivered_at"] is not None


def test_rotation_signs_with_every_secret(live_app: Flask, shop: PretendShop) -> None:
    completed_purchases(live_app, 1)

    deliver_in_process(live_app, shop.notifications_url, ("old_secret", "new_secret"))

    [got] = shop.received
    assert got.signature.count("v1=") == 2
    assert verify(got.body, got.signature, "old_secret") and verify(got.body, got.signature, "new_secret")


def test_shop_down_is_retried_later_and_nothing_is_lost(
    live_app: Flask, engine: Engine, notify_env: dict[str, str], live_server: str
) -> None:
    [nid] = completed_purchases(live_app, 1)
    port = free_port()  # nothing listens here yet: the shop is down
    env = {**notify_env, "PAYSTORE_NOTIFY_URL": f"http://127.0.0.1:{port}/shop/notifications"}

    first = paystore_cli(env, "notifications", "deliver")

    assert first.returncode == 1 and "delivered 0, failed 1" in first.stdout, first.stdout + first.stderr
    failed = row(engine, nid)
    assert failed["delivered_at"] is None and failed["dead_at"] is None
    assert (failed["attempts"], failed["failed_attempts"], failed["last_error"]) == (1, 1, "ConnectionError")
    metrics = requests.get(live_server + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text
    assert "paystore_notifications_undelivered 1.0" in metrics
    assert "paystore_notification_delivery_failures_total 1.0" in metrics
    assert "paystore_notifications_oldest_undelivered_age_seconds" in metrics

    if failed["not_due_soon"]:  # full jitter may pick a short delay; otherwise it is not due yet
        assert "delivered 0, failed 0" in paystore_cli(env, "notifications", "deliver").stdout
    shop = PretendShop().serve(port)
    try:
        make_due(engine)
        second = paystore_cli(env, "notifications", "deliver")
    finally:
        shop.stop()

    assert second.returncode == 0 and "delivered 1, failed 0" in second.stdout, second.stdout + second.stderr
    assert shop.ids() == [nid]
    assert row(engine, nid)["delivered_at"] is not None
    assert SECRET not in first.stdout + first.stderr + second.stdout + second.stderr


def test_after_three_days_a_row_is_dead_listed_and_replayable(
    live_app: Flask, engine: Engine, shop: PretendShop, notify_env: dict[str, str], live_server: str
) -> None:
    [nid] = completed_purchases(live_app, 1)
    with engine.begin() as conn:
        conn.execute(text("UPDATE notifications SET give_up_at = now() - interval '1 second'"))
    shop.status = 500

    failed = paystore_cli(notify_env, "notifications", "deliver")
    listed = paystore_cli(notify_env, "notifications", "list", "--state", "dead")

    assert failed.returncode == 1 and "dead 1" in failed.stdout
    assert row(engine, nid)["dead_at"] is not None and row(engine, nid)["last_error"] == "HTTP 500"
    assert nid in listed.stdout and "dead" in listed.stdout
    metrics = requests.get(live_server + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text
    assert "paystore_notifications_dead 1.0" in metrics and "paystore_notifications_undelivered 0.0" in metrics
    assert "delivered 0, failed 0" in paystore_cli(notify_env, "notifications", "deliver").stdout

    shop.status = 200
    assert "queued 1" in paystore_cli(notify_env, "notifications", "replay", "--dead").stdout
    assert "delivered 1" in paystore_cli(notify_env, "notifications", "deliver").stdout
    assert shop.ids() == [nid, nid]
    # A delivered row can be sent again on request too (same id: the shop deduplicates).
    assert "queued 1" in paystore_cli(notify_env, "notifications", "replay", nid).stdout
    assert "delivered 1" in paystore_cli(notify_env, "notifications", "deliver").stdout
    assert shop.ids() == [nid, nid, nid]
    unknown = paystore_cli(notify_env, "notifications", "replay", str(uuid.uuid4()))
    assert unknown.returncode == 1 and "no notification" in unknown.stderr


def test_a_deliverer_killed_mid_send_leaves_the_row_to_be_sent_again(
    live_app: Flask, engine: Engine, shop: PretendShop, notify_env: dict[str, str]
) -> None:
    [nid] = completed_purchases(live_app, 1)
    shop.hold.clear()  # the shop holds the request open until the deliverer is dead
    proc = paystore_process(notify_env, "notifications", "deliver")
    try:
        assert shop.arrived.wait(60), "the deliverer never sent"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        shop.hold.set()

    leased = row(engine, nid)
    assert leased["delivered_at"] is None and leased["attempts"] == 1 and leased["later"]
    assert "delivered 0" in paystore_cli(notify_env, "notifications", "deliver").stdout  # still leased
    make_due(engine)  # the lease lapsed
    again = paystore_cli(notify_env, "notifications", "deliver")

    assert again.returncode == 0 and "delivered 1" in again.stdout, again.stdout + again.stderr
    assert shop.ids() == [nid, nid]
    assert row(engine, nid)["delivered_at"] is not None


def test_two_deliverer_processes_send_each_row_once(
    live_app: Flask, engine: Engine, shop: PretendShop, notify_env: dict[str, str]
) -> None:
    ids = completed_purchases(live_app, 30)
    shop.delay_s = 0.02  # keep both busy at once

    procs = [paystore_process(notify_env, "notifications", "deliver") for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sorted(shop.ids()) == sorted(ids), "a row was sent twice or never"
    assert count(engine, "SELECT count(*) FROM notifications WHERE delivered_at IS NULL") == 0


def _meet_after_claiming(monkeypatch: pytest.MonkeyPatch, claim: object) -> None:
    """Both deliverers claim, then wait for each other before sending: the worst interleaving."""
    barrier = threading.Barrier(2, timeout=20)

    def claim_then_meet(db: object, exclude: list) -> notifications.Claimed | None:
        claimed = claim(db, exclude)  # type: ignore[operator]
        if claimed is not None:
            barrier.wait()
        return claimed

    monkeypatch.setattr(notifications, "claim_next", claim_then_meet)


def _two_deliverer_threads(app: Flask, url: str) -> None:
    threads = [threading.Thread(target=deliver_in_process, args=(app, url)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)


def test_two_deliverers_meeting_after_their_claims_send_each_row_once(
    live_app: Flask, shop: PretendShop, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = completed_purchases(live_app, 2)
    _meet_after_claiming(monkeypatch, notifications.claim_next)

    _two_deliverer_threads(live_app, shop.notifications_url)

    assert sorted(shop.ids()) == sorted(ids)


def test_negative_control_without_skip_locked_and_lease_both_send_every_row(
    live_app: Flask, shop: PretendShop, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = completed_purchases(live_app, 2)

    def claim_without_lock_or_lease(db, exclude):  # type: ignore[no-untyped-def]
        found = db.execute(
            select(NotificationRow.id, NotificationRow.body, NotificationRow.attempts)
            .where(NotificationRow.delivered_at.is_(None), NotificationRow.id.not_in(exclude))
            .order_by(NotificationRow.created_at).limit(1)
        ).first()
        return notifications.Claimed(*found) if found else None

    _meet_after_claiming(monkeypatch, claim_without_lock_or_lease)

    _two_deliverer_threads(live_app, shop.notifications_url)

    assert sorted(shop.ids()) == sorted(ids * 2), "no duplicate send observed"


def test_rows_of_one_purchase_go_in_order(live_app: Flask, shop: PretendShop, engine: Engine) -> None:
    [first] = completed_purchases(live_app, 1)
    with Paystore.of(live_app).session_factory() as db, db.begin():
        [purchase_id] = db.scalars(text("SELECT id FROM purchases"))
        tracked = purchases.load(db, purchase_id)
        lifecycle.apply(tracked.purchase, lambda p: setattr(p, "refunded_amount", p.amount), cause="test")
        purchases.write(db, tracked)
    shop.status = 503

    run = deliver_in_process(live_app, shop.notifications_url)

    assert (run.delivered, run.failed) == (0, 1) and shop.ids() == [first]  # the refund waits its turn
    shop.status = 200
    make_due(engine)
    deliver_in_process(live_app, shop.notifications_url)
    assert [r.json["type"] for r in shop.received] == ["purchase.completed", "purchase.completed", "purchase.refunded"]


def test_forever_delivers_until_sigterm_then_stops_cleanly(
    live_app: Flask, shop: PretendShop, notify_env: dict[str, str]
) -> None:
    proc = paystore_process(notify_env, "notifications", "deliver", "--forever", "--interval", "1s")
    try:
        [nid] = completed_purchases(live_app, 1)
        wait_until(lambda: shop.ids() == [nid] or proc.poll() is not None, timeout=60, interval=0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped: delivered 1, failed 0" in out


def test_deliver_refuses_to_run_unconfigured(cli_env: dict[str, str]) -> None:
    no_url = paystore_cli({**cli_env, "PAYSTORE_NOTIFY_SECRET": SECRET}, "notifications", "deliver")
    no_secret = paystore_cli({**cli_env, "PAYSTORE_NOTIFY_URL": "http://127.0.0.1:9/x"}, "notifications", "deliver")

    assert no_url.returncode == 2 and "PAYSTORE_NOTIFY_URL is not set" in no_url.stderr
    assert no_secret.returncode == 2 and "PAYSTORE_NOTIFY_SECRET is not set" in no_secret.stderr
    assert SECRET not in no_url.stdout + no_url.stderr

