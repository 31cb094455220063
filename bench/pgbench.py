"""The database limit: pgbench running the SQL of one checkout + webhook pair, no app, no Stripe.

Same statements, locks and transaction shape as paystore: checkout takes the creation lock,
looks for an active purchase, takes the purchase lock, inserts, sets the session and commits;
the webhook takes the purchase lock, records the event, reads and completes the purchase,
writes the shop's notification (the outbox), finishes the event record and commits. One pgbench
transaction = one pair.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url

from paystore.devtools.standin import FIXTURES

# A real event's size; its text is built in SQL: pgbench reads every `:word`, even inside a string
# literal, as a variable (hence chr(58) for the colons of the lock key).
_PAYLOAD_BYTES = len(json.dumps({**FIXTURES["event"], "data": {"object": FIXTURES["checkout.session"]}}))

SCRIPT = f"""
\\set uid random(1, 2000000000)
SELECT gen_random_uuid() AS pid, 'u' || CAST(:uid AS text) || '_' || CAST(:client_id AS text) AS usr \\gset
BEGIN;
SELECT set_config('lock_timeout', '10000ms', true), pg_advisory_xact_lock(hashtextextended('create:' || CAST(:usr AS text), 0));
SELECT id FROM purchases WHERE user_id = :usr AND program_id = 'prog_py101'
  AND status IN ('pending', 'awaiting_payment', 'completed', 'disputed');
SELECT set_config('lock_timeout', '10000ms', true), pg_advisory_xact_lock(hashtextextended('complete:' || CAST(:pid AS text), 0));
INSERT INTO purchases (id, user_id, program_id, status, amount, currency, livemode, payment, refunded_amount)
  VALUES (:pid, :usr, 'prog_py101', 'pending', 4900, 'usd', false, 'none', 0);
UPDATE purchases SET stripe_session_id = 'cs_' || CAST(:pid AS text), checkout_url = 'http://x/pay/cs_' || CAST(:pid AS text),
  session_expires_at = now() + interval '1 day', updated_at = now() WHERE id = :pid;
COMMIT;
BEGIN;
SELECT set_config('lock_timeout', '10000ms', true), pg_advisory_xact_lock(hashtextextended('complete:' || CAST(:pid AS text), 0));
INSERT INTO stripe_events (stripe_event_id, type, livemode, payload, lock_key, lock_wait_ms)
  VALUES ('evt_' || CAST(:pid AS text), 'checkout.session.completed', false,
          jsonb_build_object('id', 'evt_' || CAST(:pid AS text), 'data', repeat('x', {_PAYLOAD_BYTES})),
          'purchase' || chr(58) || 'complete' || chr(58) || CAST(:pid AS text), 0.1)
  ON CONFLICT (stripe_event_id) DO NOTHING RETURNING id;
SELECT * FROM purchases WHERE id = :pid;
UPDATE purchases SET status = 'completed', payment = 'paid', completed_at = now(), updated_at = now(),
  stripe_payment_intent_id = 'pi_' || CAST(:pid AS text) WHERE id = :pid;
INSERT INTO notifications (id, purchase_id, type, body, created_at, next_attempt_at, give_up_at)
  VALUES (gen_random_uuid(), :pid, 'purchase.completed', repeat('x', 700), now(), now(), now() + interval '3 days');
UPDATE stripe_events SET outcome = 'completed', purchase_id = :pid, processed_at = now()
  WHERE stripe_event_id = 'evt_' || CAST(:pid AS text);
COMMIT;
"""


def pgbench_pairs(database_url: str, clients: int, seconds: int) -> str:
    """pairs/s as pgbench reports them, or why it could not run."""
    exe = shutil.which("pgbench")
    if exe is None:
        return "pgbench not installed"
    url = make_url(database_url)
    args = [exe, "-n", "-M", "extended", "-f", "", "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(seconds),
            # A Unix-socket URL (the embedded server) names its directory in the query: ?host=/dir
            "-h", url.host or url.query.get("host") or "127.0.0.1", "-p", str(url.port or 5432),
            "-U", url.username or "postgres", url.database or ""]
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "pair.sql"
        script.write_text(SCRIPT)
        args[5] = str(script)
        env = {"PGPASSWORD": url.password} if url.password else {}
        result = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60,
                                env={**os.environ, **env})
    found = re.search(r"tps = ([\d.]+) \(without initial connection time\)", result.stdout)
    if result.returncode != 0 or not found:
        errors = [line for line in result.stderr.splitlines() if "error" in line.lower()] or ["?"]
        return "failed: " + errors[0][:300]
    return found.group(1)
