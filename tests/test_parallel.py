"""analoglib.parallel: the same points give the same table in-process, on pools and on Dask."""

from __future__ import annotations

import ast
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import distributed
import helpers_parallel as hp
import pytest
import torch

import analoglib.parallel
from analoglib.parallel import PointError, connect, describe_executor, run_points

BACKENDS = ["in-process", "threads", "processes", "dask"]
STDLIB = sys.stdlib_module_names
POINTS = [hp.point(seed, n) for seed, n in [(0, 4), (1, 8), (2, 16), (3, 8), (4, 32), (5, 8)]]


def _process_pool(workers: int = 2) -> ProcessPoolExecutor:
    """A pool of processes forked from a fork server that has imported torch but never run it.

    Not "fork": forking a process that already ran OpenMP (torch) regions is unsafe. Not
    "spawn": every worker would import torch and analoglib again (seconds each).
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["helpers_parallel", "analoglib.parallel"])
    return ProcessPoolExecutor(workers, mp_context=context)


@pytest.fixture(scope="module")
def process_pool() -> Iterator[ProcessPoolExecutor]:
    with _process_pool() as pool:
        yield pool


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # None would still serve /health on the fixed port 8787
        silence_logs=logging.ERROR,
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture
def executor(request: pytest.FixtureRequest) -> Iterator[Executor | Any | None]:
    """The back end named by the (indirect) ``executor`` parameter, one of BACKENDS."""
    name = request.param
    if name == "in-process":
        yield None
    elif name == "threads":
        with ThreadPoolExecutor(2) as pool:
            yield pool
    elif name == "processes":
        yield request.getfixturevalue("process_pool")
    else:
        yield request.getfixturevalue("dask_client")


def _run(points: list[hp.Point], executor: Any, **kwargs: Any) -> dict[hp.Point, Any]:
    table: dict[hp.Point, Any] = {}

    def store(p: hp.Point, result: Any) -> None:
        assert p not in table, f"{p} stored twice"
        table[p] = result

    n = run_points(hp.compute, points, store, executor, progress=False, **kwargs)
    assert n == len(table)
    return table


def _strip(table: dict[hp.Point, Any]) -> dict[tuple[int, int], Any]:
    """The table keyed by (seed, n): a failing point and its plain twin must agree."""
    return {p[:2]: result for p, result in table.items()}


@pytest.fixture(scope="module")
def reference() -> dict[tuple[int, int], list[float]]:
    """The plain loop, at one intra-op thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {p[:2]: hp.compute(p) for p in POINTS}
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("executor", BACKENDS, indirect=True)
def test_same_table_on_every_backend(executor: Any, reference: dict) -> None:
    table = _run(POINTS, executor, threads=1)
    assert _strip(table) == reference  # exact float equality
    assert set(table) == set(POINTS)


def test_in_process_runs_in_order() -> None:
    seen: list[hp.Point] = []
    run_points(hp.compute, POINTS, lambda p, r: seen.append(p), progress=False)
    assert seen == POINTS


@pytest.mark.parametrize("executor", ["in-process", "dask"], indirect=True)
def test_max_in_flight_gives_the_same_table(executor: Any, reference: dict) -> None:
    assert _strip(_run(POINTS, executor, threads=1, max_in_flight=1)) == reference


def test_max_in_flight_bounds_concurrency() -> None:
    lock = threading.Lock()
    running = [0, 0]  # now, max

    def slow(p: int) -> int:
        with lock:
            running[0] += 1
            running[1] = max(running)
        time.sleep(0.1)
        with lock:
            running[0] -= 1
        return p

    out: dict[int, int] = {}
    with ThreadPoolExecutor(4) as pool:
        n = run_points(slow, range(12), out.__setitem__, pool, max_in_flight=2, progress=False)
    assert n == 12 and out == {i: i for i in range(12)}
    assert running[1] == 2


@pytest.mark.parametrize("executor", BACKENDS, indirect=True)
def test_failing_point_is_named_and_rerun_completes(
    executor: Any, reference: dict, tmp_path: Path
) -> None:
    bad = hp.point(3, 8, "raise", str(tmp_path / "marker"))
    points = [*POINTS[:3], bad, *POINTS[4:]]
    table: dict[hp.Point, Any] = {}
    with pytest.raises(PointError, match="boom at seed 3") as excinfo:
        run_points(hp.compute, points, table.__setitem__, executor, threads=1, progress=False)
    assert excinfo.value.point == bad
    assert repr(bad) in str(excinfo.value)
    assert isinstance(excinfo.value.__cause__, ValueError)
    assert bad not in table
    if executor is None:  # a plain loop: exactly the points before the failing one
        assert list(table) == points[:3]
    assert _strip(table).items() <= reference.items()  # whatever finished is right
    # The rerun (same executor; for Dask the same task key as before) completes the table.
    todo = [p for p in points if p not in table]
    run_points(hp.compute, todo, table.__setitem__, executor, threads=1, progress=False)
    assert _strip(table) == reference


def test_dask_rerun_of_a_failed_key_computes_it_anew(dask_client: Any, tmp_path: Path) -> None:
    """The same point at the same index has the same task key in the rerun."""
    bad = hp.point(7, 8, "raise", str(tmp_path / "marker"))
    table: dict[hp.Point, Any] = {}
    with pytest.raises(PointError, match="boom at seed 7"):
        run_points(hp.compute, [bad], table.__setitem__, dask_client, progress=False)
    # Rerun at once, holding the error (like a notebook's sys.last_value): the old failed
    # future must neither be kept alive by the traceback nor still be held by the client.
    run_points(hp.compute, [bad], table.__setitem__, dask_client, progress=False)
    assert table == {bad: hp.compute(hp.point(7, 8))}


def _set_allowed_failures(dask_scheduler: Any, value: int) -> int:
    previous, dask_scheduler.allowed_failures = dask_scheduler.allowed_failures, value
    return previous


@pytest.mark.parametrize("allowed_failures", [3, 0])
def test_killed_dask_worker_then_rerun_completes(
    dask_client: Any, reference: dict, tmp_path: Path, allowed_failures: int
) -> None:
    """3 (the default): the scheduler reruns the task elsewhere; 0: the point fails."""
    killer = hp.point(2, 16, "exit", str(tmp_path / "marker"))
    points = [*POINTS[:2], killer, *POINTS[3:]]
    table: dict[hp.Point, Any] = {}
    previous = dask_client.run_on_scheduler(_set_allowed_failures, value=allowed_failures)
    try:
        if allowed_failures:
            n = run_points(hp.compute, points, table.__setitem__, dask_client, threads=1)
            assert n == len(points)
        else:  # KilledWorker for the killer (or for a point queued on the same worker)
            with pytest.raises(PointError, match="KilledWorker"):
                run_points(hp.compute, points, table.__setitem__, dask_client, threads=1)
            assert killer not in table
    finally:
        dask_client.run_on_scheduler(_set_allowed_failures, value=previous)
    assert (tmp_path / "marker").exists()  # the worker really died once
    todo = [p for p in points if p not in table]
    run_points(hp.compute, todo, table.__setitem__, dask_client, threads=1, progress=False)
    assert _strip(table) == reference
    dask_client.wait_for_workers(2, timeout=60)  # the nanny restarted the dead worker


def test_killed_pool_worker_raises_then_rerun_completes(
    process_pool: ProcessPoolExecutor, reference: dict, tmp_path: Path
) -> None:
    killer = hp.point(2, 16, "exit", str(tmp_path / "marker"))
    points = [*POINTS[:2], killer, *POINTS[3:]]
    table: dict[hp.Point, Any] = {}
    with _process_pool() as pool, pytest.raises(PointError, match="BrokenProcessPool"):
        run_points(hp.compute, points, table.__setitem__, pool, threads=1, progress=False)
    assert killer not in table and _strip(table).items() <= reference.items()
    todo = [p for p in points if p not in table]  # a broken pool is dead: rerun on another
    run_points(hp.compute, todo, table.__setitem__, process_pool, threads=1, progress=False)
    assert _strip(table) == reference


@pytest.mark.parametrize("executor", BACKENDS, indirect=True)
def test_threads_pins_the_count_where_the_point_runs(executor: Any) -> None:
    before = torch.get_num_threads()
    for threads in (2, 1):  # Dask workers default to 1 (OMP_NUM_THREADS=1), pools to #cores
        counts: dict[hp.Point, int] = {}
        run_points(hp.num_threads, POINTS, counts.__setitem__, executor, threads=threads)
        assert set(counts.values()) == {threads}
    assert torch.get_num_threads() == before  # restored in this process


def test_describe_executor(dask_client: Any) -> None:
    assert describe_executor(None) == "in-process"
    with ThreadPoolExecutor(3) as pool:
        assert describe_executor(pool) == "ThreadPoolExecutor(3 workers)"
    text = describe_executor(dask_client)
    assert text.startswith("Dask client at tcp://") and text.endswith("2 workers, 2 threads")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"threads": 0}, "threads"), ({"max_in_flight": 0}, "max_in_flight"), ({}, "executor")],
)
def test_bad_arguments_are_named(kwargs: dict, name: str) -> None:
    executor = "cluster" if name == "executor" else None
    with pytest.raises(ValueError, match=f"^{name} = "):
        run_points(hp.compute, POINTS, lambda p, r: None, executor, **kwargs)


def test_fork_pool_needs_one_thread() -> None:
    """Refused before anything is submitted (a forked worker could hang; nothing to run here)."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        for threads in (None, 2):
            with pytest.raises(ValueError, match="^executor = ProcessPoolExecutor.*'fork'"):
                run_points(hp.compute, POINTS, lambda p, r: None, pool, threads=threads)


@pytest.mark.parametrize("value", [123, "", "  ", b"local"])
def test_connect_rejects_bad_addresses(value: Any) -> None:
    with pytest.raises(ValueError, match=f"^scheduler_address = {value!r} is not allowed"):
        connect(value)


def test_connect() -> None:
    assert connect(None) is None
    client = connect("local", silence_logs=logging.ERROR)
    try:
        nthreads = client.nthreads()
        assert len(nthreads) == len(os.sched_getaffinity(0))
        assert set(nthreads.values()) == {1}
        assert client.submit(pow, 2, 10).result() == 1024
        again = connect(client.scheduler.address)  # a client of a running scheduler
        try:
            assert again.submit(pow, 3, 2).result() == 9
        finally:
            again.close()
    finally:
        client.close()
    assert client.cluster.status.name == "closed"  # the client closed the cluster it started


def test_module_imports_only_the_lowest_layer() -> None:
    """Top-level imports: stdlib, numpy/torch/tqdm, analoglib.utils; never dask/distributed."""
    tree = ast.parse(Path(analoglib.parallel.__file__).read_text())
    allowed = {"numpy", "torch", "tqdm", "analoglib.utils", "__future__"}
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert name in allowed or top in allowed - {"analoglib"} or top in STDLIB, name
