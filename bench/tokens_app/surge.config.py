"""The default config: the file store under .surge/ (the default store, fsync on every commit)."""

from surge import Config

config = Config()
