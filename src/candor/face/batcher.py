"""Face chips of concurrent callers embedded together, in one network call.

The ResNet costs less per face in a batch than one face at a time (ONNX Runtime's cost per chip
is flat from a batch of about 8 up), and :mod:`candor.face.pipeline` batches the faces of many
images for that reason. HTTP requests arrive one image each, on worker threads; without help
each would run the network on its own one or two faces. An :class:`EmbedBatcher` gives them
the pipeline's batches: a caller hands its chips to :meth:`EmbedBatcher.embed` and blocks; one
embedder thread takes every chip waiting, runs :meth:`Engine.embed_chips
<candor.face.engine.Engine.embed_chips>` once on all of them, and hands each caller its own rows.

Batches form by themselves under load: while one batch is in the network, the next callers'
chips queue up. When the embedder is idle it waits for company only while another caller has
announced itself (:meth:`EmbedBatcher.caller`: a request that may embed, still detecting) and
never longer than ``wait`` seconds (``CANDOR_BATCH_WAIT_MS``), so a lone client never waits.
Each face's embedding is computed exactly as :meth:`Engine.embed_chips` computes it alone
(the chip and its mirror, summed, unit length); only the batch around it differs, which changes
nothing but float rounding (tested to 1e-5).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager

import numpy as np

#: the most faces one embedding call takes (more wait for the next call)
MAX_BATCH_FACES = 32


class EmbedBatcher:
    """One embedder thread running ``embed_chips`` over the chips of every waiting caller."""

    def __init__(self, embed_chips: Callable[[np.ndarray], np.ndarray], wait: float = 0.004,
                 max_faces: int = MAX_BATCH_FACES) -> None:
        self._embed_chips = embed_chips
        self.wait = max(0.0, wait)
        self.max_faces = max(1, max_faces)
        self._cond = threading.Condition()
        self._queue: list[tuple[np.ndarray, Future]] = []
        self._announced = 0  # callers that may still submit chips
        self._local = threading.local()
        self._thread: threading.Thread | None = None
        self._closed = False
        #: network calls made and faces embedded (what tests and /metrics can read)
        self.batches = 0
        self.faces = 0

    # ------------------------------------------------------------------ callers

    @property
    def announced(self) -> int:
        """Callers announced that have not yet handed in chips (nor left)."""
        with self._cond:
            return self._announced

    @contextmanager
    def caller(self) -> Iterator[None]:
        """Announce a caller (an HTTP request that may embed) for the length of the block, so
        that an idle embedder waits for its chips (at most ``wait``) rather than starting a
        batch without them."""
        if getattr(self._local, "active", False):  # nested: already announced
            yield
            return
        with self._cond:
            self._announced += 1
        self._local.active = self._local.counted = True
        try:
            yield
        finally:
            self._local.active = False
            if self._local.counted:  # it never embedded: nobody waits for it any more
                self._local.counted = False
                self._withdraw()

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """Unit embeddings of ``chips`` (N, 150, 150, 3), computed in a batch with whatever
        other callers' chips are waiting; blocks until they are ready."""
        if len(chips) == 0:
            return self._embed_chips(chips)
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the embedding batcher is closed")
            self._queue.append((chips, future))
            self._start()
            if getattr(self._local, "counted", False):
                self._local.counted = False  # its chips are in: nobody waits for it now
                self._announced -= 1
            self._cond.notify_all()
        return future.result()

    def close(self) -> None:
        """Embed what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    # ------------------------------------------------------------------ the embedder

    def _withdraw(self) -> None:
        with self._cond:
            self._announced -= 1
            self._cond.notify_all()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="candor-embed-batch",
                                            daemon=True)
            self._thread.start()

    def _take(self) -> list[tuple[np.ndarray, Future]] | None:
        """The next batch: wait for work, then for company while callers are announced (at
        most ``wait``), then up to ``max_faces`` faces (always at least one caller's)."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            deadline = time.monotonic() + self.wait
            while (self._announced > 0 and sum(len(c) for c, _ in self._queue) < self.max_faces
                   and not self._closed):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch, faces = [], 0
            while self._queue and (not batch or faces + len(self._queue[0][0]) <= self.max_faces):
                chips, future = self._queue.pop(0)
                batch.append((chips, future))
                faces += len(chips)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                vectors = self._embed_chips(np.concatenate([c for c, _ in batch]))
            except BaseException as exc:  # each caller gets the error, the thread goes on
                for _, future in batch:
                    future.set_exception(exc)
                continue
            self.batches += 1
            self.faces += len(vectors)
            start = 0
            for chips, future in batch:
                future.set_result(vectors[start:start + len(chips)])
                start += len(chips)
