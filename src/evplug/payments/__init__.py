"""Payments: the provider interface, the demo and Stripe providers, and their ledger path."""
