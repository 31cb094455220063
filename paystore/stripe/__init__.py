"""Stripe: the one gateway that wraps stripe-python (gateway.py), and the Stripe objects paystore
reads, parsed strictly from plain dicts (objects.py, fields.py). Nothing else imports `stripe`."""
