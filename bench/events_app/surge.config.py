"""The default config (file store under .surge/); bench/events.py writes one for Redis."""

from surge import Config

config = Config()
