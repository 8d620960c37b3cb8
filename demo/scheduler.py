"""The one queue in front of the model, shared by the app and the Images API: it samples the candidates of
concurrent requests together, in shared passes, and bounds how long a large request can hold up a small one.

A request's candidates are split into chunks of at most `CHUNK`. One worker thread runs one pass at a time; a
pass takes at most one chunk of each request, least-served request first (the fewest chunks run so far, then
the earliest), and adds the chunks of the next requests whose sampling settings (temperature, top-k, top-p,
guidance) are the first one's, up to `PASS_CANDIDATES` candidates, through `Dalle.generate_batch_stream`.
Completions (each with an image and a region of its own) run in passes of their own, a chunk at a time.

The bound: a request waits for the pass running when it comes, then is in the next pass, unless requests that
have had no chunk yet, came before it and fill that pass (more than `PASS_CANDIDATES // CHUNK - 1` of them),
or the first of them has other settings. So a 64-candidate request (4 chunks) delays a short one by at most
one pass (and `GATHER_SECONDS`, which a pass may wait for requests to gather).

A chunk's seed is the request's for the first chunk, so a request of at most `CHUNK` candidates gets the
images of `Dalle.generate_stream` with the same seed; later chunks get seeds derived from it (`chunk_seed`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from dalle_core import Settings
from dalle_core.dalle import Dalle, Part, Progress, Result
from dalle_core.settings import MAX_SEED, SHARED_SETTINGS

CHUNK = 16  # the most candidates of one request in one pass
PASS_CANDIDATES = 128  # the most candidates in one pass
HISTORY = 256  # passes kept in `Scheduler.history`
# when fewer requests wait than the last pass served, the next pass waits up to this long for the clients just
# answered to send their next requests, so that they share it rather than split into a pass of one and the rest
GATHER_SECONDS = 0.1
_SEED_STEP = 0x9E3779B97F4A7C15  # odd: chunk seeds of one request are distinct
_END = object()  # the last item of a ticket's queue, after its updates (or an exception)


class Cancelled(Exception):
    """Raised by iterating a `Ticket` that was closed (its client went away)."""


def chunk_seed(seed: int, chunk: int) -> int:
    """The seed of a request's chunk: the request's own for the first chunk."""
    return seed if chunk == 0 else (seed + chunk * _SEED_STEP) % (MAX_SEED + 1)


@dataclass(frozen=True)
class PassRecord:
    """One pass, as `Scheduler.history` keeps it: when it started (time.monotonic()), how long it took, and its
    requests as (label: the prompt, when each was submitted)."""

    started: float
    seconds: float
    requests: list[tuple[str, float]]


@dataclass(eq=False)
class _Request:
    """A request's state in the scheduler (touched under the scheduler's lock, or by the worker)."""

    label: str
    settings: Settings
    chunks: deque[Callable[[], Iterator[list[Progress]]] | Part]  # not run yet
    shared: dict | None  # the settings a pass shares, None for a completion (it runs alone)
    rows: int  # token rows per chunk
    previews: bool  # whether its updates carry previews
    submitted: float = field(default_factory=time.monotonic)
    updates: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    served: int = 0
    rows_done: int = 0  # as its last progress said
    closed: bool = False
    done: list[Result] = field(default_factory=list)  # every candidate of the chunks run
    images: list[np.ndarray] = field(
        default_factory=list
    )  # ... and their images, in candidate order

    def progress(self, update: Progress) -> Progress:
        """This request's progress from the update of its chunk in the pass running: the images of its finished
        chunks, then the running chunk's previews; once the last chunk is done, the ranked results of all (with
        every candidate's image as previews)."""
        count = len(self.chunks) + 1  # chunks left, counting the running one
        rows_total = (self.served + count) * self.rows
        self.rows_done = self.served * self.rows + update.rows_done
        seconds = time.monotonic() - self.submitted
        previews = self.images + update.previews if update.previews else []
        if update.results is None:
            return Progress(previews, self.rows_done, rows_total, None, seconds, update.notes)
        self.done += update.results
        self.images = previews  # a chunk's last update previews all its candidates, in their order
        if count > 1:
            return Progress(previews, self.rows_done, rows_total, None, seconds, update.notes)
        best = sorted(self.done, key=lambda r: r.score, reverse=True)[: self.settings.n]
        return Progress(previews, self.rows_done, rows_total, best, seconds, update.notes)


class Ticket(Iterator[Progress]):
    """A request in the scheduler. Iterating it gives its `Progress`: after each sampled row, previews of its
    candidates so far (the finished chunks' images, then those being sampled), and rows done of all its
    chunks' rows; the best `n` results last. `close()` withdraws it: at once while it waits, after the row being
    sampled while it runs (its pass stops there if no other request is in it); iterating it then raises
    `Cancelled`."""

    def __init__(self, scheduler: Scheduler, request: _Request):
        self._scheduler, self._request = scheduler, request

    def __next__(self) -> Progress:
        item = self._request.updates.get()
        if item is _END or isinstance(item, BaseException):
            self._request.updates.put(item)  # for the next call too
            if item is _END:
                raise StopIteration
            raise item
        return item

    def close(self) -> None:
        """Withdraw the request (nothing happens if it is finished)."""
        self._scheduler._withdraw(self._request)


class Scheduler:
    """Serves `Dalle` generations and completions from several threads through one worker thread, batching them
    as the module's docstring says. `generate_stream` and `complete_stream` take the facade's arguments, check
    them at once (ValueError) and return a `Ticket`."""

    def __init__(
        self, model: Dalle, chunk: int = CHUNK, pass_candidates: int = PASS_CANDIDATES
    ) -> None:
        if not 1 <= chunk <= pass_candidates:
            raise ValueError(f"need 1 <= chunk <= pass_candidates, got {chunk}, {pass_candidates}")
        self.model, self.chunk, self.pass_candidates = model, chunk, pass_candidates
        self.history: deque[PassRecord] = deque(maxlen=HISTORY)
        self.rows_done = 0  # token rows sampled, all passes together
        self._requests: list[_Request] = []  # waiting or running, in arrival order
        self._running: list[_Request] = []  # those of the pass being run
        self._last_pass = 0  # how many requests it served
        self._turns = threading.Condition()
        self._worker: threading.Thread | None = None

    @property
    def busy(self) -> int:
        """How many requests wait or run: 0 when the model is free."""
        with self._turns:
            return len(self._requests)

    def generate_stream(self, prompt: str, previews: bool = True, **settings) -> Ticket:
        """`Dalle.generate_stream`, scheduled; without `previews` the updates before the last have none (the
        passes it is in decode them only for requests that want them)."""
        s = Settings(**settings)
        self.model.check_prompt(prompt)
        shared = {k: getattr(s, k) for k in SHARED_SETTINGS}
        chunks = deque(
            Part(prompt, size, chunk_seed(s.seed, i))
            for i, size in enumerate(self._sizes(s.candidates))
        )
        return self._submit(_Request(prompt, s, chunks, shared, self.model.grid, previews))

    def complete_stream(
        self,
        image,
        prompt: str,
        region: tuple[int, int] | None = None,
        mask: np.ndarray | None = None,
        **settings,
    ) -> Ticket:
        """`Dalle.complete_stream`, scheduled."""
        s = Settings(**settings)
        self.model.check_prompt(prompt)
        pixels = self.model.prepare_image(image)
        if (region is None) == (mask is None):
            raise ValueError(
                "give the region to redraw either as (row, col) or as a mask, not both"
            )
        r, c = self.model.check_region(self.model.snap_mask(mask) if mask is not None else region)
        options = {k: v for k, v in vars(s).items() if k not in ("n", "candidates", "seed")}

        def chunk(size: int, seed: int) -> Callable[[], Iterator[list[Progress]]]:
            return lambda: (
                [update]
                for update in self.model.complete_stream(
                    pixels, prompt, (r, c), n=size, candidates=size, seed=seed, **options
                )
            )

        chunks = deque(
            chunk(size, chunk_seed(s.seed, i)) for i, size in enumerate(self._sizes(s.candidates))
        )
        return self._submit(_Request(prompt, s, chunks, None, self.model.grid - r, True))

    # ---------------------------------------------------------------- the worker

    def _sizes(self, candidates: int) -> list[int]:
        """Chunk sizes for a request's candidates."""
        return [min(self.chunk, candidates - i) for i in range(0, candidates, self.chunk)]

    def _submit(self, request: _Request) -> Ticket:
        with self._turns:
            self._requests.append(request)
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, name="scheduler", daemon=True)
                self._worker.start()
            self._turns.notify_all()
        return Ticket(self, request)

    def _withdraw(self, request: _Request) -> None:
        with self._turns:
            if request.closed or request not in self._requests:
                return
            request.closed = True
            request.updates.put(
                Cancelled(
                    f"after {request.rows_done} rows" if request.rows_done else "before it ran"
                )
            )
            if request not in self._running:
                self._requests.remove(request)

    def _serve(self) -> None:
        """The worker: passes, one after another, while there are requests."""
        while True:
            with self._turns:
                while not self._requests:
                    self._turns.wait()
                self._turns.wait_for(
                    lambda: len(self._requests) >= self._last_pass, timeout=GATHER_SECONDS
                )
                members = self._next_pass()
                self._last_pass = len(members)
                self._running = members
                work = [m.chunks.popleft() for m in members]
            started = time.monotonic()
            try:
                self._run(members, work)
            except Exception as error:  # the facade's: every request in the pass gets it
                for m in members:
                    m.updates.put(error)
                    m.chunks.clear()
            with self._turns:
                self._running = []
                for m in members:
                    m.served += 1
                    if m.closed or not m.chunks:
                        if m in self._requests:
                            self._requests.remove(m)
                        if not m.closed:
                            m.updates.put(_END)
            requests = [(m.label, m.submitted) for m in members]
            self.history.append(PassRecord(started, time.monotonic() - started, requests))

    def _next_pass(self) -> list[_Request]:
        """The requests whose next chunks run together next (called under the lock)."""
        order = sorted(self._requests, key=lambda r: r.served)  # stable: the earliest first
        first = order[0]
        if first.shared is None:
            return [first]
        members, size = [first], first.chunks[0].candidates
        for r in order[1:]:
            if r.shared == first.shared and size + r.chunks[0].candidates <= self.pass_candidates:
                members.append(r)
                size += r.chunks[0].candidates
        return members

    def _run(self, members: list[_Request], work: list) -> None:
        """Sample one pass, handing each request its progress after every row; stop early once every request
        in it was withdrawn."""
        if members[0].shared is None:
            updates = work[0]()
        else:
            previews = any(m.previews for m in members)
            updates = self.model.generate_batch_stream(work, previews, **members[0].shared)
        try:
            for row in updates:
                self.rows_done += 1
                for m, update in zip(members, row, strict=True):
                    if not m.closed:
                        m.updates.put(m.progress(update))
                if all(m.closed for m in members):
                    return
        finally:
            updates.close()
