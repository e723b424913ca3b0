"""Surge: real-time streams for Python backends."""

__version__ = "0.1.0"
