"""Project configuration. The defaults need nothing here: durable file storage under .surge/,
no stream auth, open CORS. See examples/chat for stream auth."""

from surge import Config

config = Config()
