"""Made-up credentials that a local paystore, the Stripe stand-in, the tests and the bench agree on."""

TOKEN = "test-token-7f3a"
WEBHOOK_SECRET = "whsec_test_standin_5b1e"
STRIPE_KEY = "sk_test_standin_c0ffee"
