"""A local stand-in for the parts of the Stripe API that paystore calls, over real HTTP.

paystore reaches it through stripe-python (`STRIPE_API_BASE`). Objects are copies of Stripe's
published fixtures filled in the way real Stripe fills them (objects.py). Tests can make the
session-create call slow, fail (5xx) or hang past the client timeout, and can run a hook *before*
the create call is answered, e.g. deliver the signed `checkout.session.completed` webhook to the
app first: the worst timing real Stripe can produce (state.Faults). Webhooks are signed with
Stripe's scheme.

`python -m paystore.devtools.standin --webhook-url URL --webhook-secret S` serves it for local
demos: the checkout URL it hands out opens a hosted-checkout page (Pay, Pay by bank debit,
Cancel, Let it expire), and /dashboard stands in for Stripe's Dashboard (bank debit succeeds or
fails, refund, dispute, win or lose). Each button delivers the signed events (actions.py).

    state.py    what it remembers, and the faults a test sets
    objects.py  Stripe's objects and events, and the webhook signature
    actions.py  what a buyer, a bank and the Dashboard can do to a session
    pages.py    the checkout and Dashboard pages
    routes.py   the WSGI app: the API, the pages' buttons, the pretend shop under /shop
    server.py   StripeStandIn: start, stop, deliver
"""

from paystore.devtools.standin.objects import API_VERSION, FIXTURES, sign, stripe_id
from paystore.devtools.standin.server import StripeStandIn

__all__ = ["API_VERSION", "FIXTURES", "StripeStandIn", "sign", "stripe_id"]
