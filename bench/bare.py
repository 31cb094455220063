"""The bare floor: checkout and the paid webhook in Flask + raw psycopg, for `make bench` only.

Same contract as paystore on the benchmarked path (bearer token, JSON body, the same advisory
transaction locks and key function, the creation lock, the insert before the Stripe call, the
event record written with the effect, the shop's notification row (the transactional outbox:
one INSERT into notifications with the same columns and JSON body as paystore's, in the
webhook's transaction, when the status changes), stripe-python for the session and the
signature, a Stripe Customer made at a user's first checkout under the user's customer lock when
PAYSTORE_STRIPE_CUSTOMERS is on, as paystore's default) and nothing else: no ORM, metrics, request
logs, refunds, disputes or recovery. paystore's CPU per
pair is compared with this in the same run. Served by gunicorn.conf.py (`bench.bare:app`).
"""

from __future__ import annotations

import hmac
import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import stripe
from flask import Flask, jsonify, request

from paystore.store.locks import advisory_key_number, customer_create_lock_key, purchase_create_lock_key, purchase_lock_key

ACTIVE = ("pending", "awaiting_payment", "completed", "disputed")
LOCK_SQL = "SELECT set_config('lock_timeout', %s, true), pg_advisory_xact_lock(%s)"
NOTIFY_SQL = (
    "INSERT INTO notifications (id, purchase_id, type, body, created_at, next_attempt_at, give_up_at, attempts,"
    " failed_attempts) VALUES (%s, %s, %s, %s, %s, %s, %s, 0, 0)"
)
RETRY_FOR = timedelta(days=3)
LOCK_TIMEOUT = f"{os.environ.get('PAYSTORE_LOCK_TIMEOUT_MS') or 10000}ms"
TOKENS = [t.strip().encode() for t in os.environ.get("PAYSTORE_API_TOKENS", "").split(",") if t.strip()]
WEBHOOK_SECRET = os.environ["STRIPE_WEBHOOK_SECRET"]
DATABASE_URL = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
CUSTOMERS = (os.environ.get("PAYSTORE_STRIPE_CUSTOMERS") or "true").lower() in ("1", "true", "yes", "on")

app = Flask(__name__)
stripe_client = stripe.StripeClient(
    os.environ["STRIPE_SECRET_KEY"],
    base_addresses={"api": os.environ["STRIPE_API_BASE"]},
    http_client=stripe.RequestsClient(timeout=float(os.environ.get("PAYSTORE_STRIPE_TIMEOUT_S") or 10)),
    max_network_retries=0,
)
_local = threading.local()  # one connection per thread (greenlet under gevent): the pool


def db() -> psycopg.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(DATABASE_URL, prepare_threshold=None, application_name=f"bare:{os.getpid()}")
    return conn


def lock(cur: psycopg.Cursor, key: str) -> float:
    started = time.perf_counter()
    cur.execute(LOCK_SQL, (LOCK_TIMEOUT, advisory_key_number(key)))
    return (time.perf_counter() - started) * 1000


def customer_for(conn: psycopg.Connection, user_id: str) -> str:
    """The user's Stripe Customer, made in a transaction of its own under the user's lock."""
    with conn.transaction(), conn.cursor() as cur:
        found = cur.execute("SELECT stripe_customer_id FROM customers WHERE user_id = %s AND NOT livemode",
                            (user_id,)).fetchone()
        if found:
            return found[0]
        lock(cur, customer_create_lock_key(user_id))
        found = cur.execute("SELECT stripe_customer_id FROM customers WHERE user_id = %s AND NOT livemode",
                            (user_id,)).fetchone()
        if found:
            return found[0]
        customer = stripe_client.v1.customers.create({"metadata": {"user_id": user_id}},
                                                     {"idempotency_key": f"customer:{user_id}"})
        cur.execute("INSERT INTO customers (user_id, livemode, stripe_customer_id) VALUES (%s, false, %s)",
                    (user_id, customer.id))
        return customer.id


def error(status: int, code: str, message: str):  # noqa: ANN201
    return jsonify(error={"code": code, "message": message}), status


@app.post("/checkout")
def checkout():  # noqa: ANN201
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not any(hmac.compare_digest(token.encode(), t) for t in TOKENS):
        return error(401, "unauthorized", "missing or invalid bearer token")
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("user_id"), str) or not isinstance(body.get("program_id"), str):
        return error(400, "invalid_body", "user_id and program_id are required")
    user_id, program_id = body["user_id"], body["program_id"]
    conn = db()
    customer = {"customer": customer_for(conn, user_id)} if CUSTOMERS else {}
    with conn.transaction(), conn.cursor() as cur:
        program = cur.execute("SELECT name, amount, currency FROM programs WHERE id = %s", (program_id,)).fetchone()
        if program is None:
            return error(404, "program_not_found", program_id)
        name, amount, currency = program
        lock(cur, purchase_create_lock_key(user_id, program_id))
        cur.execute("SELECT 1 FROM purchases WHERE user_id = %s AND program_id = %s AND status = ANY(%s)",
                    (user_id, program_id, list(ACTIVE)))
        if cur.fetchone() is not None:
            return error(409, "already_purchased", "already purchased")
        purchase_id = uuid.uuid4()
        lock(cur, purchase_lock_key(purchase_id))
        cur.execute(
            "INSERT INTO purchases (id, user_id, program_id, status, amount, currency, livemode, payment, refunded_amount)"
            " VALUES (%s, %s, %s, 'pending', %s, %s, false, 'none', 0) RETURNING created_at",
            (purchase_id, user_id, program_id, amount, currency),
        )
        metadata = {"purchase_id": str(purchase_id), "user_id": user_id, "program_id": program_id}
        session = stripe_client.v1.checkout.sessions.create(
            {
                "mode": "payment", "client_reference_id": str(purchase_id), "metadata": metadata,
                "payment_intent_data": {"metadata": metadata},
                "line_items": [{"quantity": 1, "price_data": {
                    "currency": currency, "unit_amount": amount, "product_data": {"name": name}}}],
                "success_url": "http://localhost:8000/ok", "cancel_url": "http://localhost:8000/cancel",
                **customer,
            },
            {"idempotency_key": f"checkout:{purchase_id}"},
        )
        cur.execute(
            "UPDATE purchases SET stripe_session_id = %s, checkout_url = %s, session_expires_at = to_timestamp(%s),"
            " updated_at = now() WHERE id = %s",
            (session.id, session.url, session.expires_at, purchase_id),
        )
    return jsonify(purchase_id=str(purchase_id), user_id=user_id, program_id=program_id, status="pending",
                   amount=amount, currency=currency, stripe_session_id=session.id, checkout_url=session.url), 201


@app.post("/webhooks/stripe")
def webhook():  # noqa: ANN201
    payload = request.get_data(cache=False).decode()
    try:
        stripe.WebhookSignature.verify_header(payload, request.headers.get("Stripe-Signature", ""), WEBHOOK_SECRET, 300)
    except stripe.SignatureVerificationError:
        return error(400, "invalid_webhook", "invalid Stripe-Signature")
    event = json.loads(payload)
    if event["type"] != "checkout.session.completed":
        return jsonify(outcome="ignored", event_id=event["id"])
    session = event["data"]["object"]
    purchase_id = uuid.UUID(session["metadata"]["purchase_id"])
    key = purchase_lock_key(purchase_id)
    conn = db()
    with conn.transaction(), conn.cursor() as cur:
        waited = lock(cur, key)
        cur.execute(
            "INSERT INTO stripe_events (stripe_event_id, type, livemode, payload, lock_key, lock_wait_ms)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (stripe_event_id) DO NOTHING RETURNING id",
            (event["id"], event["type"], event["livemode"], psycopg.types.json.Jsonb(event), key, waited),
        )
        if cur.fetchone() is None:
            return jsonify(outcome="duplicate", event_id=event["id"])
        row = cur.execute("SELECT status, amount, currency FROM purchases WHERE id = %s", (purchase_id,)).fetchone()
        if row is None:
            raise LookupError(f"purchase {purchase_id} not found")  # 500: Stripe retries
        status, amount, currency = row
        outcome = "stale"
        if status == "pending" and session["payment_status"] == "paid":
            if session["amount_total"] != amount or session["currency"] != currency:
                raise ValueError("amount or currency mismatch")
            purchase = cur.execute(
                "UPDATE purchases SET status = 'completed', payment = 'paid', completed_at = now(), updated_at = now(),"
                " stripe_payment_intent_id = %s WHERE id = %s RETURNING user_id, program_id, refunded_amount,"
                " stripe_session_id, created_at, completed_at",
                (session["payment_intent"], purchase_id),
            ).fetchone()
            notify(cur, purchase_id, amount, currency, purchase)
            outcome = "completed"
        cur.execute(
            "UPDATE stripe_events SET outcome = %s, purchase_id = %s, processed_at = now() WHERE stripe_event_id = %s",
            (outcome, purchase_id, event["id"]),
        )
    return jsonify(outcome=outcome, event_id=event["id"], purchase_id=str(purchase_id))


def notify(cur: psycopg.Cursor, purchase_id: uuid.UUID, amount: int, currency: str, row: tuple) -> None:
    """The outbox row paystore writes for pending -> completed: same columns, same body."""
    user_id, program_id, refunded_amount, session_id, created_at, completed_at = row
    now, notification_id = datetime.now(UTC), uuid.uuid4()
    body = {
        "id": str(notification_id), "type": "purchase.completed", "created_at": now.isoformat(),
        "data": {"purchase": {
            "purchase_id": str(purchase_id), "user_id": user_id, "program_id": program_id, "status": "completed",
            "amount": amount, "currency": currency, "refunded_amount": refunded_amount, "stripe_session_id": session_id,
            "checkout_url": None, "created_at": created_at.isoformat(), "completed_at": completed_at.isoformat(),
        }, "previous_status": "pending"},
    }
    cur.execute(NOTIFY_SQL, (notification_id, purchase_id, body["type"], json.dumps(body, separators=(",", ":")),
                             now, now, now + RETRY_FOR))


@app.get("/healthz")
def healthz():  # noqa: ANN201
    return jsonify(status="ok")
