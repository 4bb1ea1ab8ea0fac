"""Group commit: saves that arrive while a commit runs are committed together in the next one.

A caller whose save finds nothing being committed commits it at once, in its own thread, so a
single run pays no thread switch. A save that arrives while a commit runs joins a queue; when
that commit ends, the queue goes to a writer thread of the group's own, which commits
everything queued in one transaction, again and again until the queue is empty. So under load
each commit carries every save waiting for it, and each caller still returns only when its own
save is committed (or has failed). Asyncio callers always hand their saves to the writer thread
and await them, so the event loop never waits on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Generic, Protocol, TypeVar

__all__ = ["Entry", "GroupCommit"]

logger = logging.getLogger(__name__)


class Entry(Protocol):
    """What the group needs of a queued save: where its commit records the outcome."""

    done: bool
    """Set by the commit once the save is committed or has failed."""
    error: BaseException | None
    """Set by the commit when the save failed."""


E = TypeVar("E", bound=Entry)
"""The queued saves of one group."""


class _Waiting:
    """How to wake the caller of one queued save."""

    __slots__ = ("event", "future", "loop")

    def __init__(
        self,
        event: threading.Event | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[None] | None = None,
    ) -> None:
        self.event = event
        self.loop = loop
        self.future = future


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():  # a cancelled waiter is not woken
            future.set_result(None)


class GroupCommit(Generic[E]):
    """Commits saves in groups: see the module docstring.

    Args:
        commit: Commits a batch in one transaction and records each entry's outcome in it
            (``done``, ``error``). What it raises is recorded in every entry of the batch
            that has no outcome yet.
        lock: Held around taking a batch and committing it (the store's lock): saves that
            arrive while something else holds it join the batch.
        idle: Run by the committing thread when the queue empties, if :meth:`when_idle`
            asked for it.
        name: The writer thread's name.
    """

    def __init__(
        self,
        commit: Callable[[list[E]], None],
        idle: Callable[[], None],
        lock: AbstractContextManager[object],
        *,
        name: str,
    ) -> None:
        self._commit = commit
        self._lock = lock
        self._idle = idle
        self._name = name
        self._cv = threading.Condition(threading.Lock())
        self._queue: list[tuple[E, _Waiting | None]] = []
        self._busy = False
        """A committer (a caller or the writer thread) owns the queue and will empty it."""
        self._writer_owns = False
        self._idle_wanted = False
        self._writer: threading.Thread | None = None
        self._closing = False

    def pending(self) -> int:
        """How many saves are queued (not yet taken by a commit)."""
        with self._cv:
            return len(self._queue)

    def save(self, entry: E) -> None:
        """Commit ``entry`` alone or with others; return once its outcome is recorded."""
        event: threading.Event | None = None
        with self._cv:
            if self._busy:
                event = threading.Event()
                self._queue.append((entry, _Waiting(event=event)))
            else:
                self._busy = True
                self._queue.append((entry, None))
        if event is not None:
            event.wait()
            return
        # This caller owns the queue: it commits what is queued now (its own save and any
        # that came meanwhile), then hands what arrives during that commit to the writer.
        try:
            self._take_and_run()
        finally:
            with self._cv:
                if self._queue:
                    self._hand_to_writer()
                else:
                    self._go_idle()

    async def asave(self, entry: E) -> None:
        """Like :meth:`save`, for a caller on an event loop: the writer thread commits."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._cv:
            self._queue.append((entry, _Waiting(loop=loop, future=future)))
            if not self._busy:
                self._busy = True
                self._hand_to_writer()
        await future

    def when_idle(self) -> bool:
        """Ask for the ``idle`` callback when the current commits end; False if nothing is
        being committed (the caller may act at once)."""
        with self._cv:
            if self._busy:
                self._idle_wanted = True
                return True
            return False

    def close(self) -> None:
        """Wait until every queued save is committed, and stop the writer thread."""
        with self._cv:
            self._closing = True
            while self._busy:
                self._cv.wait()
            self._cv.notify_all()
            writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join()

    # ----- the committing side -----------------------------------------------------------

    def _take_and_run(self) -> None:
        with self._lock:
            with self._cv:
                batch, self._queue = self._queue, []
            self._run(batch)

    def _run(self, batch: list[tuple[E, _Waiting | None]]) -> None:
        """Commit a batch and wake its callers, whatever happens."""
        entries = [entry for entry, _ in batch]
        try:
            self._commit(entries)
        except BaseException as exc:
            # No caller of the batch may return as if its save were committed.
            for entry in entries:
                if entry.error is None and not entry.done:
                    entry.error = exc
            if not isinstance(exc, Exception):
                raise
            logger.debug("a group commit failed; its callers raise the error", exc_info=True)
        finally:
            futures: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for entry, waiting in batch:
                entry.done = True
                if waiting is None:
                    continue
                if waiting.event is not None:
                    waiting.event.set()
                elif waiting.loop is not None and waiting.future is not None:
                    futures.setdefault(waiting.loop, []).append(waiting.future)
            for loop, waiting_futures in futures.items():
                # One wake-up per event loop for the whole batch.
                with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
                    loop.call_soon_threadsafe(_resolve, waiting_futures)

    def _hand_to_writer(self) -> None:
        """(Holding the condition.) Let the writer thread own the queue."""
        self._writer_owns = True
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(target=self._write, name=self._name, daemon=True)
            self._writer.start()
        self._cv.notify_all()

    def _go_idle(self) -> None:
        """(Holding the condition, queue empty.) Run the idle callback if asked, then stop
        owning the queue, unless saves came meanwhile."""
        while self._idle_wanted and not self._queue:
            self._idle_wanted = False
            self._cv.release()
            try:
                self._idle()
            except Exception:  # nobody waits for it; the next read retries it
                logger.warning("deferred work after a group commit failed", exc_info=True)
            finally:
                self._cv.acquire()
        if self._queue:
            self._hand_to_writer()
            return
        self._busy = False
        self._writer_owns = False
        self._cv.notify_all()

    def _write(self) -> None:
        """The writer thread: empty the queue whenever it is handed over, until closed."""
        with self._cv:
            while True:
                while not self._writer_owns:
                    if self._closing:
                        return
                    self._cv.wait()
                while self._queue:
                    self._cv.release()
                    try:
                        self._take_and_run()
                    except BaseException:  # its callers have it; the writer must go on
                        logger.exception("a group commit failed")
                    finally:
                        self._cv.acquire()
                self._go_idle()
