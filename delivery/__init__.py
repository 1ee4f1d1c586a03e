"""Postal delivery: outbox, fulfilment worker, S10 numbers, manifests, labels, tracking events."""
