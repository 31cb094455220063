"""Measure what stripe-python's own retries would do to checkout's Stripe call (docs/faults.md).

Checkout holds its transaction and the purchase lock across `checkout.sessions.create`, so the
time this call takes is the lock hold time. Compares, against the local stand-in over real HTTP:
  - no retries, one attempt bounded by T (what paystore does), and
  - max_network_retries=1 with each attempt bounded by (T - 0.5 s) / 2, so that two attempts and
    stripe-python's 0.5 s back-off still fit in T,
for: a normal answer, a connection cut after Stripe created the session, one 500, an answer
that takes 0.6 T, and one slower than T. Prints one line per case: outcome, elapsed (= lock hold), create calls, sessions.

    .venv/bin/python scripts/measure_stripe_retries.py [T=2.0] [repeats=3]
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import stripe  # noqa: E402

from paystore.devtools.standin import StripeStandIn  # noqa: E402
from paystore.stripe.calls import CheckoutRequest  # noqa: E402
from paystore.stripe.errors import StripeUnavailable  # noqa: E402
from paystore.stripe.gateway import StripeGateway  # noqa: E402

BACKOFF_S = 0.5  # stripe-python's first retry delay (HTTPClient.INITIAL_DELAY; never less)


def gateway(standin: StripeStandIn, timeout_s: float, retries: int) -> StripeGateway:
    gw = StripeGateway("sk_test_measure", ("whsec_measure",), api_base=standin.base_url, timeout_s=timeout_s)
    if retries:
        per_attempt = (timeout_s - BACKOFF_S * retries) / (retries + 1)
        gw._client = stripe.StripeClient(  # noqa: SLF001 - a measurement of the alternative
            "sk_test_measure", base_addresses={"api": standin.base_url},
            http_client=stripe.RequestsClient(timeout=per_attempt), max_network_retries=retries,
        )
    return gw


def one(standin: StripeStandIn, gw: StripeGateway, fault: str, timeout_s: float) -> tuple[str, float, int, int]:
    standin.reset()
    if fault == "cut":
        standin.faults.create.append("drop")
    elif fault == "500 once":
        standin.faults.create.append(500)
    elif fault == "slower than T":
        standin.faults.create_delay_s = timeout_s + 1.0
    elif fault == "slow, 0.6 T":
        standin.faults.create_delay_s = 0.6 * timeout_s
    request = CheckoutRequest(uuid.uuid4(), "u1", "prog_1", "Program", 4900, "usd", "http://x/s", "http://x/c")
    started = time.perf_counter()
    try:
        gw.create_checkout_session(request)
        outcome = "session"
    except StripeUnavailable:
        outcome = "502"
    elapsed = time.perf_counter() - started
    standin.faults.create_delay_s = 0
    return outcome, elapsed, len(standin.state.create_calls), len(standin.sessions)


def main() -> None:
    timeout_s = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    standin = StripeStandIn("whsec_measure").start()
    try:
        print(f"T = PAYSTORE_STRIPE_TIMEOUT_S = {timeout_s} s; median of {repeats}")
        print(f"{'config':<34}{'case':<16}{'outcome':<9}{'hold s':>8}{'calls':>7}{'sessions':>10}")
        for label, retries in (("no retries (paystore)", 0), ("1 retry, attempt (T-0.5)/2", 1)):
            gw = gateway(standin, timeout_s, retries)
            for fault in ("normal", "cut", "500 once", "slow, 0.6 T", "slower than T"):
                runs = [one(standin, gw, fault, timeout_s) for _ in range(repeats)]
                outcome, _, calls, sessions = runs[-1]
                hold = statistics.median(r[1] for r in runs)
                print(f"{label:<34}{fault:<16}{outcome:<9}{hold:>8.3f}{calls:>7}{sessions:>10}")
    finally:
        standin.stop()


if __name__ == "__main__":
    main()
