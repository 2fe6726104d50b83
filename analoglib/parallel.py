"""Run independent study points in-process, on a ``concurrent.futures`` executor, or on Dask.

A study is a list of independent *points*; each finished point is stored at once (one fsynced
line of a resumable JSON-lines file), so a rerun only computes the unfinished ones.
:func:`run_points` computes such a list with any of three back ends and hands every result to a
callback **in the calling process**, so the store never has to be shared:

* ``executor=None``: in this process, in order: exactly a plain ``for`` loop (the reference).
* a :class:`concurrent.futures.Executor` (``ProcessPoolExecutor``, ``ThreadPoolExecutor``).
* a ``distributed.Client`` (a Dask cluster, local or remote; see :func:`connect`).

Contract for the point function ``func``:

* It is a pure function of its point: the point carries everything, seeds included (derive
  them with :func:`analoglib.utils.derive_seed` from the study seed and the point's fields).
  Results must not depend on the process, the machine or the order in which points ran.
* For process pools and Dask it must be picklable: a module-level function (or a
  ``functools.partial`` of one), importable in the worker processes. Lambdas and closures
  work with Dask (cloudpickle) but not with ``ProcessPoolExecutor``.
* Points and results should be small (they travel to and from the workers). Load heavy shared
  state (datasets, trained models) inside ``func`` through a module-level cache, e.g. a
  ``functools.lru_cache`` loader keyed by a field of the point, so that each worker process
  loads it once instead of receiving it with every task.

Thread counts: each Dask worker runs with ``OMP_NUM_THREADS=1`` (set by its nanny), a process
pool worker with torch's default (one thread per core) and the in-process run with whatever
this process uses. Torch CPU kernels can round differently with different intra-op thread
counts: on a 2-core machine with torch 2.13, 1 and 2 threads gave bit-identical matmuls,
convolutions, LSTMs, softmax and a backward pass, but 3, 4 and 8 threads changed the last bits
of a 4-million-element ``sum``; so on larger machines an in-process run (all cores) and a Dask
run (1 thread per worker) can differ. Pass ``threads`` to :func:`run_points`: every point then
runs under exactly that many intra-op threads in every back end, which is what is guaranteed.
With it, back ends give bit-identical results on the same machine and library versions as
long as ``func`` is deterministic at a fixed thread count (true of the ops above; the tests
check it for all four back ends).

Process pools: create them with ``mp_context=multiprocessing.get_context("forkserver")`` (or
``"spawn"``). A worker forked (Linux's default before Python 3.14) from a process that has run
torch ops on several threads hangs in its first multi-threaded op, so :func:`run_points`
accepts a ``fork`` pool only with ``threads=1``. Forked workers also share the parent's global
RNG state: one more reason for points to carry their seeds.

Example:
    >>> from analoglib.parallel import connect, run_points
    >>> client = connect("local")  # doctest: +SKIP
    >>> todo = [p for p in spec.points() if point_key(*p) not in file]  # doctest: +SKIP
    >>> run_points(evaluate_point, todo, lambda p, r: file.append(r), client)  # doctest: +SKIP
    >>> client.close()  # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeGuard, TypeVar

import torch
from tqdm.auto import tqdm

from analoglib.utils import check_int, progress_enabled

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["PointError", "connect", "describe_executor", "is_dask_client", "run_points"]

P = TypeVar("P")
R = TypeVar("R")


class PointError(RuntimeError):
    """A point failed: its function raised, or (Dask) its worker died too often.

    The original exception is the ``__cause__``; :attr:`point` is the failed point.
    """

    def __init__(self, point: Any, message: str) -> None:
        super().__init__(message)
        self.point = point


class _WithThreads(Generic[P, R]):
    """Picklable wrapper running ``func`` under ``torch.set_num_threads(threads)``.

    It runs inside the thread that executes the task: with torch's OpenMP backend the count
    is per thread (setting it in one thread leaves the threads already running torch ops
    unchanged). It restores the previous count afterwards.
    """

    def __init__(self, func: Callable[[P], R], threads: int) -> None:
        self.func = func
        self.threads = threads

    def __call__(self, point: P) -> R:
        previous = torch.get_num_threads()
        if previous == self.threads:
            return self.func(point)
        torch.set_num_threads(self.threads)
        try:
            return self.func(point)
        finally:
            torch.set_num_threads(previous)


def is_dask_client(executor: object) -> TypeGuard[Client]:
    """Whether ``executor`` is a ``distributed.Client`` (checked without importing Dask)."""
    return any(
        cls.__name__ == "Client" and (cls.__module__ or "").split(".")[0] == "distributed"
        for cls in type(executor).__mro__
    )


def _failure(point: Any, exc: BaseException, where: str) -> PointError:
    return PointError(point, f"point {point!r} failed ({where}): {type(exc).__name__}: {exc}")


def run_points(
    func: Callable[[P], R],
    points: Sequence[P],
    on_result: Callable[[P, R], None],
    executor: cf.Executor | Client | None = None,
    *,
    threads: int | None = None,
    max_in_flight: int | None = None,
    progress: bool = True,
    desc: str = "points",
) -> int:
    """Compute ``func(point)`` for every point and hand each result to ``on_result``.

    ``on_result(point, result)`` is always called in this process (and thread), one point at a
    time, as soon as the point is finished: in order without an executor, in completion order
    with one. Store the result there (e.g. append a fsynced line to the resumable file); an
    interrupted run then loses at most the points still being computed.

    Per-point seeds are the caller's business: the point must carry everything ``func`` needs,
    so that results do not depend on where or in which order points ran (see the module
    docstring for the picklability and thread-count caveats).

    If a point fails, the points not started yet are cancelled (Dask: all unfinished ones),
    those already finished are handed to ``on_result``, and a :class:`PointError` naming the
    point is raised; rerunning the unfinished points resumes. Running tasks of a
    ``concurrent.futures`` executor cannot be cancelled: they finish in the background and
    their results are dropped. With Dask, a task whose worker dies is rerun on another worker
    by the scheduler (``distributed.scheduler.allowed-failures``, default 3 deaths); only then
    does the point fail (``KilledWorker``). There are no retries for exceptions.

    Args:
        func: Pure function of one point. Module-level (picklable) for process pools and Dask.
        points: The points to compute (the unfinished ones), in run order.
        on_result: Called as ``on_result(point, result)`` in this process for every point.
        executor: None (in-process), a ``concurrent.futures.Executor``, or a
            ``distributed.Client``. The caller owns it (it is not shut down here).
        threads: Run every point under ``torch.set_num_threads(threads)``, in the worker that
            runs it; the previous count is restored after the point. None (default) leaves
            each worker's count as it is. With the same ``threads``, every back end gives the
            same results as the in-process run (see the module docstring); ``threads=1`` also
            avoids oversubscribing the cores with a process pool.
        max_in_flight: At most this many points submitted but not finished (None: submit all
            at once). Ignored without an executor.
        progress: Show a progress bar (also off with ``ANALOGLIB_PROGRESS=0``).
        desc: Label of the progress bar and prefix of the Dask task keys.

    Returns:
        The number of points computed (handed to ``on_result``).

    Raises:
        PointError: If a point failed; the original exception is its ``__cause__``.
        ValueError: If ``threads`` or ``max_in_flight`` is not a positive integer, ``desc``
            not a string, ``executor`` neither None, an executor nor a Dask client, or a
            process pool using ``fork`` without ``threads=1``.
    """
    todo = list(points)
    if not isinstance(desc, str):
        raise ValueError(f"desc = {desc!r} is not allowed: expected a string.")
    if threads is not None:
        func = _WithThreads(func, check_int("threads", threads, 1))
    if max_in_flight is not None:
        max_in_flight = check_int("max_in_flight", max_in_flight, 1)
    bar = tqdm(total=len(todo), desc=desc, disable=not progress_enabled(progress))
    try:
        if executor is None:
            for point in todo:
                try:
                    result = func(point)
                except Exception as exc:
                    raise _failure(point, exc, "in-process") from exc
                on_result(point, result)
                bar.update()
            return len(todo)
        if is_dask_client(executor):
            return _run_dask(func, todo, on_result, executor, max_in_flight, desc, bar)
        if isinstance(executor, cf.Executor):
            _check_not_forking(executor, threads)
            return _run_executor(func, todo, on_result, executor, max_in_flight, bar)
        raise ValueError(
            f"executor = {executor!r} is not allowed: expected None, a "
            "concurrent.futures.Executor or a distributed.Client."
        )
    finally:
        bar.close()


def _check_not_forking(executor: cf.Executor, threads: int | None) -> None:
    """Refuse a ``fork`` process pool unless workers run single-threaded (they would hang)."""
    context = getattr(executor, "_mp_context", None)
    if (
        isinstance(executor, cf.ProcessPoolExecutor)
        and context is not None
        and context.get_start_method() == "fork"
        and threads != 1
    ):
        raise ValueError(
            f"executor = {describe_executor(executor)} with the 'fork' start method is not "
            f"allowed with threads = {threads!r}: forked workers hang in torch's OpenMP thread "
            "pool once this process has used it. Create the pool with mp_context="
            "multiprocessing.get_context('forkserver') (or 'spawn'), or pass threads=1."
        )


def _run_executor(
    func: Callable[[P], R],
    todo: list[P],
    on_result: Callable[[P, R], None],
    executor: cf.Executor,
    max_in_flight: int | None,
    bar: tqdm,
) -> int:
    """:func:`run_points` on a ``concurrent.futures`` executor."""
    limit = len(todo) if max_in_flight is None else max_in_flight
    where = describe_executor(executor)
    pending: dict[cf.Future[R], int] = {}
    next_index = done = 0
    try:
        while done < len(todo):
            while next_index < len(todo) and len(pending) < limit:
                pending[executor.submit(func, todo[next_index])] = next_index
                next_index += 1
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            failed: tuple[int, BaseException] | None = None
            for future in sorted(finished, key=pending.__getitem__):  # determinism in a batch
                index = pending.pop(future)
                exc = cf.CancelledError() if future.cancelled() else future.exception()
                if exc is not None:
                    failed = failed or (index, exc)
                    continue
                on_result(todo[index], future.result())
                done += 1
                bar.update()
            if failed is not None:
                for future in list(pending):  # store what finished meanwhile, drop the rest
                    if future.done() and not future.cancelled() and future.exception() is None:
                        on_result(todo[pending.pop(future)], future.result())
                        done += 1
                        bar.update()
                index, exc = failed
                raise _failure(todo[index], exc, where) from exc
    finally:
        for future in pending:
            future.cancel()
    return done


def _run_dask(
    func: Callable[[P], R],
    todo: list[P],
    on_result: Callable[[P, R], None],
    client: Client,
    max_in_flight: int | None,
    desc: str,
    bar: tqdm,
) -> int:
    """:func:`run_points` on a Dask ``distributed.Client``.

    Task keys are ``"<desc>-<index>-<token of (func, point)>"``: readable in the dashboard and
    deterministic. The client keeps a key's state (finished, error, cancelled) while any
    ``Future`` of it is alive, and a resubmitted key reuses that state. So before an error
    propagates, every reference to the futures is dropped (also from this frame, which the
    traceback keeps alive) and the client is given time to release them (it does so
    asynchronously): a rerun on the same client then computes failed points anew instead of
    getting the old error back.
    """
    from dask.base import tokenize
    from distributed import as_completed

    limit = len(todo) if max_in_flight is None else max_in_flight
    where = describe_executor(client)
    ident = (func.func, func.threads) if isinstance(func, _WithThreads) else func
    pending: dict[Any, int] = {}  # distributed.Future -> index in todo
    keys: list[str] = []

    def submit(index: int) -> Any:
        keys.append(f"{desc}-{index}-{tokenize(ident, todo[index])}")
        future = client.submit(func, todo[index], pure=False, key=keys[-1])
        pending[future] = index
        return future

    failure: PointError | None = None
    cause: BaseException | None = None
    done = 0
    finished: Any = None
    future: Any = None
    ready: list[Any] = []
    try:
        first = min(limit, len(todo))
        finished = as_completed([submit(i) for i in range(first)], with_results=False)
        next_index = first
        for future in finished:
            index = pending.pop(future)
            if future.status != "finished":
                cause = future.exception() if future.status == "error" else None
                cause = cause or RuntimeError(f"the Dask task is {future.status}")
                failure = _failure(todo[index], cause, where)
                break
            on_result(todo[index], future.result())
            done += 1
            bar.update()
            if next_index < len(todo):
                finished.add(submit(next_index))
                next_index += 1
        if failure is not None:
            finished.clear()
            ready = [f for f in pending if f.status == "finished"]
            client.cancel([f for f in pending if f.status != "finished"])
            for future in sorted(ready, key=pending.__getitem__):
                on_result(todo[pending.pop(future)], future.result())
                done += 1
                bar.update()
    finally:
        if pending:
            client.cancel(list(pending))
        # Drop every reference to a future, also from this frame (a traceback keeps it alive).
        pending.clear()
        ready.clear()
        future = finished = None
        if failure is not None or done < len(todo):  # stopped early
            _wait_released(client, keys)
    if failure is not None:
        raise failure from cause
    return done


def _wait_released(client: Client, keys: list[str], timeout: float = 2.0) -> None:
    """Wait (at most ``timeout`` s) until ``client`` has released ``keys`` we no longer hold."""
    held = getattr(client, "futures", None)  # key -> state, while a Future of the key lives
    deadline = time.monotonic() + timeout
    while isinstance(held, dict) and any(key in held for key in keys):
        if time.monotonic() > deadline:  # someone else holds a future of the same key
            break
        time.sleep(0.01)


def describe_executor(executor: cf.Executor | Client | None) -> str:
    """A one-line description of where :func:`run_points` runs, for logs.

    Args:
        executor: None, a ``concurrent.futures.Executor`` or a ``distributed.Client``.

    Returns:
        E.g. ``"in-process"``, ``"ProcessPoolExecutor(2 workers)"`` or
        ``"Dask client at tcp://127.0.0.1:8786, 2 workers, 2 threads"``.
    """
    if executor is None:
        return "in-process"
    if is_dask_client(executor):
        address = getattr(getattr(executor, "scheduler", None), "address", "?")
        try:
            nthreads: dict[str, int] = executor.nthreads()
        except Exception:  # a closed or unreachable client: still describe it
            return f"Dask client at {address} (not connected)"
        return (
            f"Dask client at {address}, {len(nthreads)} workers, {sum(nthreads.values())} threads"
        )
    workers = getattr(executor, "_max_workers", None)
    name = type(executor).__name__
    return f"{name}({workers} workers)" if isinstance(workers, int) else name


def connect(scheduler_address: str | None, **kwargs: Any) -> Client | None:
    """A Dask client for notebooks: None, a cluster's scheduler, or a new local cluster.

    Args:
        scheduler_address: None (no cluster: :func:`run_points` runs in-process), ``"local"``
            (start a ``distributed.LocalCluster`` with one single-threaded worker process per
            available core, its dashboard on a free port), or the address of a
            running scheduler, e.g. ``"tcp://10.0.0.5:8786"``.
        **kwargs: Passed to ``distributed.Client``; with ``"local"`` they override the
            cluster's defaults (``n_workers``, ``threads_per_worker``, ``processes``,
            ``dashboard_address``, ``silence_logs``, ``memory_limit``, ...).

    Returns:
        None, or the client. Close it when done (``client.close()`` or ``with``); with
        ``"local"`` that also shuts the cluster down.

    Raises:
        ValueError: If ``scheduler_address`` is neither None nor a non-empty string.
    """
    if scheduler_address is None:
        return None
    if not isinstance(scheduler_address, str) or not scheduler_address.strip():
        raise ValueError(
            f"scheduler_address = {scheduler_address!r} is not allowed: expected None, "
            "'local' or a scheduler address such as 'tcp://10.0.0.5:8786'."
        )
    from distributed import Client

    if scheduler_address.strip() == "local":
        if hasattr(os, "sched_getaffinity"):
            cores = len(os.sched_getaffinity(0))
        else:  # pragma: no cover - macOS, Windows
            cores = os.cpu_count() or 1
        options: dict[str, Any] = {
            "n_workers": cores,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": ":0",  # any free port (served only if bokeh is installed)
        }
        options.update(kwargs)
        return Client(**options)  # the client owns the LocalCluster it starts
    return Client(scheduler_address.strip(), **kwargs)
