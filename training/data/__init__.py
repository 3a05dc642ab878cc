"""Synthetic training data generated from the body model and the pose prior (no licensed data needed)."""
