"""Streams: the facade handlers use, the storage protocol, and the built-in stores."""
