"""Fixtures of the end-to-end suite: real ``surge`` processes on real ports."""

from e2e.surge_process import surge_server

__all__ = ["surge_server"]
