"""Project configuration: the defaults (durable file storage under .surge/, the embedded
durable queue, open CORS). The model is chosen from the environment: see README.md."""

from surge import Config

config = Config()
