"""Telling the shop: delivering the outbox's notifications (signed as Stripe signs webhooks, at
least once, retried for days), the signature a shop checks, and the operator's list and replay."""
