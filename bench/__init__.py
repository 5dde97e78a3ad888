"""Measuring tools beside the library: `python -m bench` (run from the repository's root)."""
