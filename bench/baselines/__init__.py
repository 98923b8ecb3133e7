"""Baseline servers that fanwire is compared against (see bench/README.md)."""
