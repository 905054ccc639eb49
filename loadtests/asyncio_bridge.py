"""Run asyncio code from Locust's gevent greenlets.

Why: Locust users are greenlets on gevent's hub, the reference ``Caller`` is
asyncio.  One asyncio loop runs in a native thread per Locust process; a
greenlet hands it a coroutine and parks on a :class:`gevent.event.AsyncResult`
until the loop thread posts the outcome back through the hub's thread-safe
callback queue.  The greenlet yields to the hub while it waits, so other
users keep running (``concurrent.futures.Future.result()`` would block the
whole hub).

Locust monkey-patches ``threading``, ``socket`` and ``selectors`` before any
locustfile is imported, so the thread is started with the original
``_thread.start_new_thread`` and the loop is given the original epoll
selector; nothing here takes a (patched) lock across the two threads.
The bridge's loop is always asyncio's own (with that selector), whatever
``RP_EVENT_LOOP`` says: that setting picks the loop of the worker under load.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import gevent
import gevent.event
import gevent.monkey

T = TypeVar("T")

START_TIMEOUT = 10.0


def _original_selector() -> selectors.BaseSelector:
    """The selector asyncio would use without gevent's patches."""
    selector_class = gevent.monkey.get_original("selectors", "DefaultSelector")
    return selector_class()


def _start_native_thread(target: Callable[[], None]) -> None:
    start_new_thread = gevent.monkey.get_original("_thread", "start_new_thread")
    start_new_thread(target, ())


class BridgeError(RuntimeError):
    """The loop thread is not running."""


class AsyncioBridge:
    """One asyncio event loop in its own native thread, callable from greenlets."""

    def __init__(self) -> None:
        self.loop = asyncio.SelectorEventLoop(_original_selector())
        self._hub_loop: Any = None
        self._stopped = gevent.event.AsyncResult()
        self._running = False

    def start(self) -> None:
        """Start the loop thread and wait (cooperatively) until it runs."""
        if self._running:
            return
        self._hub_loop = gevent.get_hub().loop
        started = gevent.event.AsyncResult()
        self.loop.call_soon(self._post, started.set, True)
        _start_native_thread(self._run_loop)
        started.get(timeout=START_TIMEOUT)
        self._running = True

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()
                self._post(self._stopped.set, True)

    def _post(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` on the gevent hub (called from the loop thread)."""
        self._hub_loop.run_callback_threadsafe(function, *args)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop; the calling greenlet yields until it ends.

        If the greenlet is killed (Locust stopping a user) or ``timeout``
        passes, the asyncio task is cancelled.
        """
        if not self._running:
            coroutine.close()
            raise BridgeError("the asyncio loop thread is not running")
        result: gevent.event.AsyncResult = gevent.event.AsyncResult()
        handle: list[asyncio.Task[T]] = []
        self.loop.call_soon_threadsafe(self._start_task, coroutine, result, handle)
        try:
            return result.get(timeout=timeout)
        except BaseException:
            self.loop.call_soon_threadsafe(self._cancel, handle)
            raise

    def _start_task(
        self, coroutine: Coroutine[Any, Any, T], result: gevent.event.AsyncResult, handle: list[asyncio.Task[T]]
    ) -> None:
        task = self.loop.create_task(coroutine)
        handle.append(task)
        task.add_done_callback(lambda done: self._deliver(done, result))

    def _deliver(self, task: asyncio.Task[T], result: gevent.event.AsyncResult) -> None:
        if task.cancelled():
            self._post(result.set_exception, asyncio.CancelledError())
            return
        error = task.exception()
        if error is not None:
            self._post(result.set_exception, error)
        else:
            self._post(result.set, task.result())

    @staticmethod
    def _cancel(handle: list[asyncio.Task[Any]]) -> None:
        for task in handle:
            task.cancel()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel what still runs, stop the loop and wait for its thread to end."""
        if not self._running:
            return
        self._running = False
        self.loop.call_soon_threadsafe(self._cancel_all_and_stop)
        self._stopped.get(timeout=timeout)

    def _cancel_all_and_stop(self) -> None:
        tasks = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        for task in tasks:
            task.cancel()
        if not tasks:
            self.loop.stop()
            return
        gathered = asyncio.gather(*tasks, return_exceptions=True)
        gathered.add_done_callback(lambda _: self.loop.stop())
        self.loop.call_later(2.0, self.loop.stop)  # a task that ignores cancellation cannot hold the thread
