"""Deterministic enhancement of marking photos, torch-free.

Chains of named steps, multi-light relief views, the forensic trail of every derived image, and
over-stamping flags.
"""
