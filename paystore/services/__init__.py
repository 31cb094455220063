"""The services: what paystore does, one flow per function. Each owns its transaction, reads and
writes only through the store (paystore.store) and never imports Flask, so that the HTTP routes,
the CLI and the tests drive the same code."""
