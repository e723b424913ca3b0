"""Project configuration. The defaults need nothing here: durable file storage under .surge/,
no stream auth, open CORS."""

from surge import Config

config = Config()
