"""The default config: the file store under .surge/ (SURGE_STORE=memory for the memory store)."""

from surge import Config

config = Config()
