#!/usr/bin/env bash
# `make serve`: paystore on http://127.0.0.1:8000 with the embedded PostgreSQL (DATABASE_URL
# unset) and, unless STRIPE_SECRET_KEY is set, the local Stripe stand-in (paystore.devtools).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
port=${PORT:-8000}
export PAYSTORE_API_TOKENS=${PAYSTORE_API_TOKENS:-dev-token}
export STRIPE_WEBHOOK_SECRET=${STRIPE_WEBHOOK_SECRET:-whsec_local_dev}
export GUNICORN_BIND=${GUNICORN_BIND:-127.0.0.1:$port}
# gthread workers (gunicorn.conf.py): 2 processes x 16 threads, i.e. at most 32 connections to
# the embedded PostgreSQL (max_connections 100), with 12 checkout slots per process.
export GUNICORN_WORKERS=${GUNICORN_WORKERS:-2}
export PAYSTORE_THREADS=${PAYSTORE_THREADS:-16}

if [ -z "${STRIPE_SECRET_KEY:-}" ]; then
	standin_port=${STANDIN_PORT:-12111}
	export STRIPE_SECRET_KEY=sk_test_local_standin
	export STRIPE_API_BASE=http://127.0.0.1:$standin_port
	# The buyer comes back to paystore's own result page; Cancel and notifications go to the
	# stand-in's pretend shop (docs/local-checkout.md).
	export PAYSTORE_SUCCESS_URL=${PAYSTORE_SUCCESS_URL:-http://127.0.0.1:$port/checkout/return?session_id=\{CHECKOUT_SESSION_ID\}}
	export PAYSTORE_CANCEL_URL=${PAYSTORE_CANCEL_URL:-http://127.0.0.1:$standin_port/shop/cancel}
	export PAYSTORE_NOTIFY_URL=${PAYSTORE_NOTIFY_URL:-http://127.0.0.1:$standin_port/shop/notifications}
	export PAYSTORE_NOTIFY_SECRET=${PAYSTORE_NOTIFY_SECRET:-whsec_local_shop}
	"$bin/python" -m paystore.devtools.standin --port "$standin_port" \
		--webhook-url "http://127.0.0.1:$port/webhooks/stripe" --webhook-secret "$STRIPE_WEBHOOK_SECRET" \
		--notify-secret "${PAYSTORE_NOTIFY_SECRET%%,*}" &
	standin=$!
	trap 'kill $standin 2>/dev/null || true' EXIT
	stripe_note="the local Stripe stand-in: open checkout_url and press a button (Dashboard: http://127.0.0.1:$standin_port/dashboard)"
	# What the CLI needs to reach the stand-in (its key is a fixed fake; a real key is never printed).
	cli_env="STRIPE_SECRET_KEY=$STRIPE_SECRET_KEY STRIPE_API_BASE=$STRIPE_API_BASE "
	fail_note='On the Dashboard, "Fail this refund" then fails it as a bank does days later, when the card is gone.'
else
	stripe_note="Stripe itself (forward webhooks: stripe listen --forward-to localhost:$port/webhooks/stripe)"
fi

if ! "$bin/paystore" programs list | grep -q '^prog_demo '; then
	# As a course shop sets one up: buyers may enter a test promotion code (COURSE10, WELCOME5,
	# FREECOURSE) and Stripe Tax adds VAT for the country they pick on the checkout page.
	"$bin/paystore" programs add prog_demo --name "Demo program" --amount 4900 --currency usd \
		--promotion-codes --automatic-tax --tax-behavior exclusive
fi

if [ -n "${PAYSTORE_NOTIFY_URL:-}" ]; then
	# Tells the shop of every status change, as a service unit would in production.
	"$bin/paystore" notifications deliver --forever &
	deliverer=$!
	trap 'kill ${standin:-} $deliverer 2>/dev/null || true' EXIT
fi

cat >&2 <<BANNER

paystore on http://127.0.0.1:$port, embedded PostgreSQL in ./instance/pgdata, payments through
$stripe_note.
  curl -s -X POST http://127.0.0.1:$port/checkout -H 'Authorization: Bearer ${PAYSTORE_API_TOKENS%%,*}' \\
       -H 'Content-Type: application/json' -d '{"user_id": "alice", "program_id": "prog_demo"}'
  curl -s http://127.0.0.1:$port/purchases/PURCHASE_ID -H 'Authorization: Bearer ${PAYSTORE_API_TOKENS%%,*}'
A refund started by the shop, once the purchase is paid (amount in cents; leave it out for all):
  curl -s -X POST http://127.0.0.1:$port/purchases/PURCHASE_ID/refunds -H 'Authorization: Bearer ${PAYSTORE_API_TOKENS%%,*}' \\
       -H 'Idempotency-Key: refund-1' -H 'Content-Type: application/json' -d '{"amount": 1000}'
  or, from another terminal in this folder:
  ${cli_env:-}.venv/bin/paystore refunds create PURCHASE_ID --amount 1000
${fail_note:-}

BANNER
"$bin/gunicorn" wsgi:app
