"""A deadline for an asyncio task with no task of its own (a request's timeout, a shard call's)."""

from __future__ import annotations

import asyncio
from typing import Any


class Deadline:
    """``with Deadline(seconds):`` cancels the task past ``seconds`` and raises ``asyncio.TimeoutError``
    out of the block (Python 3.11's ``asyncio.timeout``, also on 3.10; unlike ``asyncio.wait_for`` on
    3.10 and 3.11, no task of its own: one timer a request). A cancellation from outside goes through."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._fired = False

    def __enter__(self) -> Deadline:
        task = asyncio.current_task()
        assert task is not None, "Deadline needs a running task"
        self._task = task
        self._cancelling = task.cancelling() if hasattr(task, "cancelling") else 0
        self._handle = asyncio.get_running_loop().call_later(self.seconds, self._fire)
        return self

    def _fire(self) -> None:
        self._fired = True
        self._task.cancel()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._handle.cancel()
        if not (self._fired and exc_type is asyncio.CancelledError):
            return
        uncancel = getattr(self._task, "uncancel", None)  # 3.11+: take back the deadline's cancel
        if uncancel is not None and uncancel() > self._cancelling:
            return  # cancelled from outside as well: let that through
        raise asyncio.TimeoutError from exc
