"""Where a run's leads are simulated: in this process, on local worker processes
(`--workers N`), or on a Dask distributed cluster (`--dask ADDRESS`, the `dask` extra).

A run's leads are cut into pieces of `chunk` leads by lead number; each piece runs on its
own (`run.run_piece` lead by lead, or `vector.run_piece` as columns of `vector_chunk`
leads) and `run.merge` makes one run of them. Random draws are keyed by
seed, lead and what is drawn, never by draw order, and the one thing leads share (the
round-robin turns of handoffs) is settled in the merge, so the run is the same for any
piece size and wherever the pieces ran. Pieces also bound memory: the engine holds the
state of one piece's leads at a time per worker.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from ..errors import UsageError

if TYPE_CHECKING:
    from ..plan import Plan
    from .behavior import Behavior
    from .cohort import Cohort, Lead
    from .run import Part
    from .tally import Tally

CHUNK = 2_000
VECTOR_CHUNK = 250_000
ENGINES = ("auto", "vector", "per-lead")
MAX_WORKERS = 256
DASK_TIMEOUT = "10s"
DASK_SPREAD = 4  # pieces for a Dask cluster: as for this many workers

# Leads one at a time, or as columns with the minute their days start from.
Piece = Union[Sequence[Tuple["Lead", str]], Tuple["Cohort", int]]
Result = Union["Part", "Tally"]
Context = Tuple["Plan", "Behavior", int, int, int]  # plan, behaviour model, seed, start, horizon


@dataclass(frozen=True)
class Workers:
    """How a run is spread: `processes` local processes, or the Dask scheduler at `dask`."""

    processes: int = 1
    dask: Optional[str] = None
    chunk: int = CHUNK
    vector_chunk: int = VECTOR_CHUNK
    engine: str = "auto"  # how leads are simulated: auto, vector (as columns) or per-lead (`run.simulate`)

    def __post_init__(self) -> None:
        if not 1 <= self.processes <= MAX_WORKERS:
            raise UsageError(f"--workers {self.processes}: give from 1 to {MAX_WORKERS} worker processes")
        if self.engine not in ENGINES:
            raise UsageError(f"--engine {self.engine}: give one of {', '.join(ENGINES)}")
        if min(self.chunk, self.vector_chunk) < 1:
            raise UsageError(f"chunk {min(self.chunk, self.vector_chunk)}: a piece needs at least one lead")
        if self.dask is not None and self.processes != 1:
            raise UsageError("give --workers or --dask, not both",
                             "--dask runs the pieces on the cluster's workers; size the cluster there")

    def run(self, plan: "Plan", behavior: "Behavior", seed: int, start: int, horizon: int,
            cohort: Any, progress: Optional[Callable[[int], None]] = None, columns: bool = False
            ) -> List[Result]:
        """Every piece of `cohort`, simulated, in piece order: leads one at a time (a list
        of `Lead`s), or with `columns` a list of (`Cohort`, the minute its leads' days
        start from). `progress` hears the engine steps taken so far."""
        context: Context = (plan, behavior, seed, start, horizon)
        size = self.vector_chunk if columns else self.chunk
        total = sum(len(c) for c, _ in cohort) if columns else len(cohort)
        if self.dask is None and self.processes == 1:
            return _here(context, _cut(cohort, size, columns), progress)
        # Elsewhere, about four pieces a worker, so that a slow piece does not hold the rest up.
        spread = self.processes if self.dask is None else DASK_SPREAD
        pieces = list(_cut(cohort, min(size, -(-total // (4 * spread))), columns))
        if self.dask is not None:
            return _on_dask(self.dask, context, pieces, progress)
        return _on_processes(min(self.processes, len(pieces)), context, pieces, progress)


def _cut(cohort: Any, chunk: int, columns: bool) -> Iterator[Piece]:
    """The pieces, made as they are asked for (a piece of columns is a copy of its rows)."""
    step = max(1, chunk)
    if not columns:
        yield from [cohort[i:i + step] for i in range(0, len(cohort), step)] or [cohort]
        return
    import numpy as np

    for c, base in cohort:
        for i in range(0, len(c), step):
            yield c.take(np.arange(i, min(len(c), i + step))), base


def _work(context: Context, piece: Piece) -> Result:
    """One piece, simulated where this runs."""
    if isinstance(piece, tuple) and len(piece) == 2 and isinstance(piece[1], int):
        from . import vector

        return vector.run_piece(*context, *piece)
    from .run import run_piece

    return run_piece(*context, piece)


def _steps(result: Result) -> int:
    """Engine steps a piece took (a tally's `steps` are its sequence steps' counts)."""
    from .tally import Tally

    return result.engine_steps if isinstance(result, Tally) else result.steps


def _here(context: Context, pieces: Iterable[Piece], progress: Optional[Callable[[int], None]]) -> List[Result]:
    parts: List[Result] = []
    done = 0
    for piece in pieces:
        parts.append(_work(context, piece))
        done += _steps(parts[-1])
        if progress is not None:
            progress(done)
    return parts


# -- local processes --------------------------------------------------------------------
_CONTEXT: Optional[Context] = None


def _start_worker(context: Context) -> None:
    global _CONTEXT
    _CONTEXT = context


def _piece_in_worker(piece: Piece) -> Result:
    assert _CONTEXT is not None
    return _work(_CONTEXT, piece)


def _on_processes(processes: int, context: Context, pieces: List[Piece],
                  progress: Optional[Callable[[int], None]]) -> List[Result]:
    # fork where the platform has it (the worker starts with fnl already imported), else spawn.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    parts: List[Optional[Result]] = [None] * len(pieces)
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context(method), initializer=_start_worker,
                             initargs=(context,)) as pool:
        futures: Dict[Future, int] = {pool.submit(_piece_in_worker, piece): i for i, piece in enumerate(pieces)}
        _gather(futures, as_completed(futures), parts, progress)
    return [p for p in parts if p is not None]


def _gather(futures: Dict, completed: Iterable, parts: List[Optional[Result]],
            progress: Optional[Callable[[int], None]]) -> None:
    """Each piece's part into its place as it finishes, the steps so far to `progress`."""
    done = 0
    for future in completed:
        part = future.result()
        parts[futures[future]] = part
        done += _steps(part)
        if progress is not None:
            progress(done)


# -- Dask distributed ---------------------------------------------------------------------
def _piece_on_dask(piece: Piece, context: Context) -> Result:
    return _work(context, piece)


def _on_dask(address: str, context: Context, pieces: List[Piece],
             progress: Optional[Callable[[int], None]]) -> List[Result]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise UsageError("--dask needs Dask distributed, which is not installed",
                         "install fnl's dask extra: pip install 'fnl[dask]'") from None
    try:
        # Checked before a client exists: one made from a malformed address fails, then
        # stalls the exit for 20 s while it is collected.
        from distributed.comm.addressing import parse_address, parse_host_port

        scheme, location = parse_address(address)
        if scheme in ("tcp", "tls", "ws", "wss"):
            parse_host_port(location)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--dask {address}: not a scheduler address ({exc})",
                         "give the scheduler's address, such as tcp://127.0.0.1:8786") from None
    try:
        client = Client(address, timeout=DASK_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise UsageError(f"--dask {address}: cannot reach a Dask scheduler there ({type(exc).__name__}: {exc})",
                         "give the scheduler's address, such as tcp://127.0.0.1:8786, and check it is running") \
            from None
    with client:
        shared = client.scatter([context], broadcast=True)[0]
        futures = {client.submit(_piece_on_dask, piece, shared, pure=False): i for i, piece in enumerate(pieces)}
        parts: List[Optional[Result]] = [None] * len(pieces)
        _gather(futures, as_completed(list(futures), loop=client.loop), parts, progress)
    return [p for p in parts if p is not None]
