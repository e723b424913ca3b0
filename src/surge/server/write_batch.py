"""Socket writes of one fan-out on two threads: ``WriteBatch``.

Why: at fan-out the server's time is the ``write`` system calls themselves, one per connection
(on loopback ~9 µs each: the kernel runs the receiver's TCP input in the sender's call, and wakes
the receiver). ``os.write`` releases the GIL, so two threads can be in the kernel at once: with a
spare core, the fan-out to 1,000 connections ends sooner (bench/README.md, seventh session).

How, keeping every guarantee of one thread:

- **Collect, hand over in chunks, write.** Between ``begin`` and ``finish`` (the hub's fan-out
  of one message, or one ``Flusher`` pass over many dirty outboxes), ``LeanDirectTransport``
  gives a write that would go straight to the socket (nothing buffered in its transport, not
  closing, no TLS) to ``add`` instead. Every ``CHUNK`` entries go to the helper thread's queue.
  ``finish`` writes what is left on the loop, taking chunks the helper has not started, and then
  waits for the chunk the helper is writing, if any; it never waits for a helper that has not
  woken up. The two threads overlap in the kernel: while the loop builds frames (pure Python)
  it keeps the GIL, up to the switch interval, so the helper mostly writes while the loop does.
- **Nothing happens to a collected connection before its write.** Only the loop closes
  descriptors and writes to transports, and it is inside the fan-out until ``finish`` returned;
  the helper skips a transport that is closing.
- **Order.** A connection written a second time within one batch first makes the batch write
  everything collected so far (``drain``), so its bytes stay in order. Whatever a socket did not
  take (a partial write, EAGAIN, an error) goes to its transport's ``write`` at ``drain``, on the
  loop, as a single-threaded write would: the transport buffers it, applies flow control, or
  meets the error and closes.
- **When.** A fan-out to fewer than ``CHUNK`` connections never involves the helper (its wake-up
  costs tens of µs). The helper runs only while ``enabled``: ``Limits.parallel_writes`` (off by
  default: it pays only with a core to spare), and only while the process may run on more CPUs
  than ``surge start`` runs workers.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Final, Protocol

__all__ = ["CHUNK", "Batched", "WriteBatch", "usable_cpus"]

logger = logging.getLogger(__name__)

CHUNK: Final = 32
"""Collected writes handed to the helper thread at a time."""


class Batched(Protocol):
    """What a batch needs of a transport (``LeanDirectTransport``)."""

    @property
    def fd(self) -> int:
        """The socket's descriptor for a direct write, or -1 when it must not be written."""
        ...

    def write_rest(self, data: bytes) -> None:
        """Take what the socket did not (buffer it, apply flow control, or meet the error)."""
        ...


_Entry = tuple[Batched, bytes]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


class WriteBatch:
    """Collects the direct socket writes of one fan-out and writes them on two threads."""

    __slots__ = (
        "_chunk",
        "_done",
        "_handed",
        "_helper",
        "_jobs",
        "_short",
        "batched_writes",
        "enabled",
        "generation",
        "helped_chunks",
        "is_collecting",
    )

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        """False: ``begin`` collects nothing and every write goes out at once, on the loop."""
        self.is_collecting = False
        self.generation = 0
        """Changes with every batch: a transport's mark that it is in the current one."""
        self.batched_writes = 0
        """Writes collected by batches (tests read it)."""
        self.helped_chunks = 0
        """Chunks the helper thread wrote (tests read it)."""
        self._chunk: list[_Entry] = []
        self._handed = 0  # chunks handed to the helper's queue and not yet accounted for
        self._jobs: queue.SimpleQueue[list[_Entry] | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[list[_Entry] | None] = queue.SimpleQueue()
        self._short: list[_Entry] = []
        self._helper: threading.Thread | None = None

    def begin(self) -> bool:
        """Start collecting (True), or False when disabled or already collecting."""
        if not self.enabled or self.is_collecting:
            return False
        self.is_collecting = True
        self.generation += 1
        return True

    def add(self, transport: Batched, data: bytes) -> None:
        """Queue ``data`` for ``transport``'s socket (``transport`` is not in the batch yet)."""
        chunk = self._chunk
        chunk.append((transport, data))
        self.batched_writes += 1
        if len(chunk) >= CHUNK:
            self._chunk = []
            self._hand(chunk)

    def drain(self) -> None:
        """Write everything collected so far, and what the sockets did not take to their
        transports; the batch goes on collecting.

        Whatever raises on the way (a transport's ``write``, say), every handed chunk is
        accounted for and every remainder reaches its transport before this returns; then the
        first exception is raised."""
        chunk = self._chunk
        self._chunk = []
        try:
            if chunk:
                self._short += _write_all(chunk)
        finally:
            if self._handed:
                self._share()
            short, self._short = self._short, []
            error: BaseException | None = None
            for transport, rest in short:
                try:
                    transport.write_rest(rest)
                except BaseException as exc:  # the others still get theirs, in order
                    error = error or exc
            if error is not None:
                raise error

    def finish(self) -> None:
        """Write everything collected (``drain``) and stop collecting."""
        try:
            self.drain()
        finally:
            self.is_collecting = False

    def close(self) -> None:
        """Stop the helper thread (idempotent); a later batch starts another (a second
        lifespan of the same app). Called on the loop thread, between fan-outs: the helper is
        idle and exits at once."""
        helper, self._helper = self._helper, None
        if helper is not None:
            self._jobs.put(None)
            helper.join()

    def _hand(self, chunk: list[_Entry]) -> None:
        if self._helper is None:
            self._helper = threading.Thread(
                target=self._help,
                args=(self._jobs, self._done),
                name="surge-socket-write",
                daemon=True,
            )
            self._helper.start()
        self._handed += 1
        self._jobs.put(chunk)

    def _share(self) -> None:
        """Write the handed chunks the helper has not taken, then wait for the ones it took."""
        jobs, done = self._jobs, self._done
        while self._handed:
            try:
                chunk = jobs.get_nowait()
            except queue.Empty:
                break  # the helper holds the rest
            if chunk is None:  # close()'s stop: the helper's, after the chunks it holds
                jobs.put(None)
                break
            self._handed -= 1
            self._short += _write_all(chunk)
        while self._handed:
            short = done.get()
            self._handed -= 1
            self.helped_chunks += 1
            if short:
                self._short += short

    @staticmethod
    def _help(
        jobs: queue.SimpleQueue[list[_Entry] | None], done: queue.SimpleQueue[list[_Entry] | None]
    ) -> None:
        while True:
            chunk = jobs.get()
            if chunk is None:
                return
            done.put(_write_all(chunk) or None)
            del chunk  # holds no transport while it waits for the next chunk


def _write_all(entries: list[_Entry]) -> list[_Entry]:
    """``os.write`` each entry; returns what the sockets did not take, as (transport, rest).

    An entry whose write fails in any other way than ``OSError`` is logged and returned whole,
    as unwritten: its transport's own ``write`` meets the problem on the loop, and the helper
    thread never dies of it."""
    short: list[_Entry] = []
    write = os.write
    for entry in entries:
        transport, data = entry
        try:
            fd = transport.fd
            sent = write(fd, data) if fd >= 0 else 0
        except OSError:  # EAGAIN, EINTR, or an error the transport's write will meet too
            sent = 0
        except Exception:  # nothing was written (the write itself did not return)
            logger.exception("a batched socket write failed; its transport takes it")
            sent = 0
        if sent != len(data):
            short.append(entry if not sent else (transport, data[sent:]))
    return short
