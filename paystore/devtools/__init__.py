"""Development-only tools shared by the tests, `bench/` and `make serve` (the Stripe stand-in).

Product code never imports from here: paystore talks to Stripe only through
`paystore.stripe.gateway`, and in development that gateway is pointed at the stand-in with
STRIPE_API_BASE.
"""
