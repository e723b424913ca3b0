"""Sans-I/O wire protocol: message types, the codec, the per-connection session. No sockets here."""
