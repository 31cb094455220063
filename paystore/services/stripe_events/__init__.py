"""Stripe's events: the webhook handler that applies each event once under its purchase's lock,
the rebuilding of a purchase whose checkout rolled back, and the record of events (listing and
replay)."""
