"""`python -m paystore.devtools.standin`: serve the stand-in for a local demo (make serve)."""

from __future__ import annotations

import argparse
import sys
import threading

from paystore.devtools.standin import StripeStandIn


def main() -> None:
    parser = argparse.ArgumentParser(description="A local stand-in for Stripe, for paystore's local demo.")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--webhook-url", required=True)
    parser.add_argument("--webhook-secret", required=True)
    parser.add_argument("--notify-secret", help="PAYSTORE_NOTIFY_SECRET, to check notifications sent to /shop/notifications")
    args = parser.parse_args()
    standin = StripeStandIn(args.webhook_secret, args.webhook_url, port=args.port, notify_secret=args.notify_secret)
    sys.stdout.write(f"Stripe stand-in on {standin.base_url} (Dashboard: {standin.base_url}/dashboard), "
                     f"delivering webhooks to {args.webhook_url}\n")
    sys.stdout.flush()
    standin.start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
