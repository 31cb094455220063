"""Buying a program: checkout, the buyer's return and a shop's refresh, reconcile (asking Stripe
about purchases whose webhook never came), what a user may access, and the programs on sale."""
