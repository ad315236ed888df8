"""Test data for tests/ and bench/: synthetic runs in the event shapes the runtime writes.

Not part of the product: nothing under ledgerflow imports it, and the wheel does not install
it. Tests and benchmarks run from the repository root, which puts it on the import path.
"""
