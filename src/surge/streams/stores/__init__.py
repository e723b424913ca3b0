"""Built-in ``StreamAdapter`` implementations: memory, file (SQLite), redis (lazy)."""
