"""The domain: what a purchase and a program are, and how a purchase's status follows from what
Stripe has told (lifecycle). Pure rules and plain objects: no database, no HTTP, no Stripe calls,
so that they can be tested alone (tests/unit)."""
