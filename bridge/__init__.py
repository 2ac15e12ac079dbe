"""Precinct: police non-emergency web chat bridged to end-to-end-encrypted Matrix rooms."""

__version__ = "0.1.0"
