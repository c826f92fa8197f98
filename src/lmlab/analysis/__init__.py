"""Reusable analyses over recorded activations (any model)."""
