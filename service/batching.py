"""Query encoding shared by concurrent requests (``lsr serve``, one :class:`EncodeBatcher` a served
index whose query encoder is batch-invariant: the lean SPLADE runtime, lsr.encoders.lean_query).

A text query is encoded at once when fewer than ``slots`` encodings are running; otherwise it waits
and joins the next batch, which starts when a running one finishes and holds every query that came
meanwhile (up to ``max_batch``). An idle service adds no wait; a busy one encodes batches, whose
vocabulary projection reads the model's weights once for all their queries. The encoder gives a query
the same vector whichever queries share its batch, so answers do not depend on the load.

A batch that fails is encoded again one query at a time, so a query that fails fails alone; a request
that timed out while waiting is dropped from its batch.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from typing import Any

from lsr.index.sparse import SparseBatch
from lsr.service.lean import SearchPool

MAX_BATCH = 32  # queries in one encoding


class EncodeBatcher:
    """Text queries -> one-row :class:`SparseBatch` each, encoded in batches on the search pool.

    Args:
        pool: the search pool the encodings run on.
        encode: texts -> their vectors, in order (``Searcher.encode_texts``).
        slots: encodings running at once.
        max_batch: queries in one encoding.
    """

    def __init__(
        self,
        pool: SearchPool,
        encode: Callable[[Sequence[str]], SparseBatch],
        slots: int,
        max_batch: int = MAX_BATCH,
    ):
        if slots < 1 or max_batch < 1:
            raise ValueError(f"slots = {slots} and max_batch = {max_batch} must be >= 1")
        self.pool = pool
        self.encode_texts = encode
        self.slots = slots
        self.max_batch = max_batch
        self.running = 0
        self.waiting: list[tuple[str, asyncio.Future]] = []

    async def encode(self, text: str) -> SparseBatch:
        """``text``'s vector (one row); the encoder's exception if this query fails."""
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((text, future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        while self.waiting and self.running < self.slots:
            batch = [(t, f) for t, f in self.waiting[: self.max_batch] if not f.done()]  # done: timed out
            del self.waiting[: self.max_batch]
            if batch:
                self._start(batch)

    def _start(self, batch: list[tuple[str, asyncio.Future]]) -> None:
        self.running += 1
        job = self.pool.submit(self.encode_texts, [t for t, _ in batch])
        job.add_done_callback(functools.partial(self._finished, batch))

    def _finished(self, batch: list[tuple[str, asyncio.Future]], job: asyncio.Future) -> None:
        self.running -= 1
        if job.cancelled():  # the pool shut down
            for _, future in batch:
                future.cancel()
            return
        error = job.exception()
        if error is None:
            vectors = job.result()
            for i, (_, future) in enumerate(batch):
                _settle(future, vectors.slice(i, i + 1), None)
        elif len(batch) == 1:
            _settle(batch[0][1], None, error)
        else:  # one query's failure must not fail the others: each alone, before the queries waiting
            for item in batch:
                if not item[1].done():
                    self._start([item])
        self._dispatch()


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # the request timed out meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
