"""Caching and crash-safe writing: hashed cache keys, atomic files, resumable JSON-lines stores.

Every file the library writes for later reuse goes through this module:

* :func:`atomic_save`, :func:`atomic_write_text`, :func:`atomic_write` and
  :func:`atomic_directory` write to a temporary file (or folder) beside the target and rename
  it over the target, so an interrupted write leaves at
  most a stray temporary file, never a partial target;
* :func:`key_digest` turns the parameters that determine an artifact into the short hash that
  names its file (``data/cache/<kind>/<name>/<digest>.pt``);
* :class:`JsonlStore` is an append-only JSON-lines file of finished study points (a header
  line with the parameters, then one fsynced line per point) that a rerun resumes from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import torch

__all__ = [
    "SIMULATION_REVISION",
    "JsonlStore",
    "atomic_directory",
    "atomic_save",
    "atomic_write",
    "atomic_write_text",
    "json_normalized",
    "jsonable",
    "key_digest",
]

log = logging.getLogger(__name__)

#: Revision of the simulated numbers. Bump it with any change that alters what a seeded
#: simulation returns (the physics, or the order of its random draws): it is part of the key of
#: every cached result that depends on the simulation (HWA checkpoints, sweeps, study points), so
#: results made by older code are computed again instead of reused. Digital (FP) checkpoints do
#: not depend on it. 2: convolutions on convolution kernels (new order of the noise draws). 3: the
#: net-weight conductance pair (aihwkit's convention) by default. 4: HWA training as aihwkit's
#: C++ tile (steps on the effective weights, one weight-noise draw per optimiser step, output
#: scales folded at remapping, ADC-bound mask on the input gradient only).
SIMULATION_REVISION = 4


def jsonable(value: Any) -> Any:
    """``value`` with NumPy scalars, tensors and paths turned into plain JSON types.

    Dict keys become strings; tuples become lists; anything else passes through unchanged
    (so ``json.dumps`` still rejects what it cannot write).
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def json_normalized(value: Any) -> Any:
    """``value`` after a JSON round trip (sorted keys; what JSON cannot hold becomes ``str``).

    Two values are stored as equal by a cache exactly when their normalised forms are equal;
    this is the form in which checkpoints record the parameters that made them.
    """
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def key_digest(payload: Any, length: int = 16) -> str:
    """First ``length`` hex digits of the SHA-256 of ``payload`` as sorted JSON.

    Values JSON cannot hold are written as their ``str``.
    """
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@contextmanager
def atomic_write(path: Path, mode: str = "w", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; rename it over ``path`` on success.

    The parent folder is created. If the body raises, the temporary file is removed and
    ``path`` is left as it was.

    Args:
        path: The target file.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        **open_kwargs: Passed to :func:`open` (e.g. ``encoding``, ``newline``).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode = {mode!r} is not allowed: expected 'w' or 'wb'.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, **open_kwargs) as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """A temporary folder beside ``path`` to fill; renamed to ``path`` when the body succeeds.

    The folder appears complete or not at all. If another process finished the same folder
    first, its copy is kept and this one discarded. The temporary folder is always removed.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        try:
            os.replace(tmp, path)
        except OSError:
            if not path.is_dir():  # not a concurrent builder that finished first: re-raise
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`); returns ``path``."""
    with atomic_write(path, "w", encoding=encoding) as handle:
        handle.write(text)
    return Path(path)


def atomic_save(obj: Any, path: Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    An interrupted save leaves at most a stray temporary file, never a partial ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class JsonlStore:
    """Append-only JSON-lines file of a study: a header line, then one line per finished point.

    Opening an existing file reads its finished points; a last line without its newline (a
    write cut short by a kill) is dropped from the file, any other unreadable line raises.
    Every :meth:`append` is flushed and fsynced before it returns, so an interrupted run loses
    only the point in progress, and a rerun skips every point already stored.

    Args:
        path: The ``.jsonl`` file (created with its parent folder if missing).
        parameters: The study's parameters, stored in (or checked against) the header.
        key: Identity of a record (e.g. ``(workload, nonideality, value, rep)``).
        columns: Column order of :meth:`table` (None: the records' own keys).
        sort_by: Columns :meth:`table` sorts by (None: the order of appending).
        what: Word for the study in error messages (e.g. ``"sweep"``).

    Raises:
        ValueError: If the file holds another study's results or a corrupt line.
    """

    def __init__(
        self,
        path: Path,
        parameters: dict[str, Any],
        key: Callable[[dict[str, Any]], Hashable],
        columns: tuple[str, ...] | None = None,
        sort_by: list[str] | None = None,
        what: str = "study",
    ) -> None:
        self.path = Path(path)
        self.parameters = parameters
        self.key = key
        self.columns = columns
        self.sort_by = sort_by
        self.what = what
        self.records: dict[Hashable, dict[str, Any]] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > 0:
            self._read()
        else:
            self._write_line({"header": parameters}, mode="w")

    def _read(self) -> None:
        data = self.path.read_bytes()
        complete, _, torn = data.rpartition(b"\n")
        if torn:
            log.warning("%s: dropping a torn last line (%d bytes)", self.path, len(torn))
            with open(self.path, "r+b") as handle:
                handle.truncate(len(complete) + 1 if complete else 0)
        lines = complete.decode().split("\n") if complete else []
        if not lines:  # only a torn header: start afresh
            self._write_line({"header": self.parameters}, mode="w")
            return
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{self.path}, line {number}: not valid JSON ({err}); the file is corrupt "
                    f"beyond a torn last line. Delete it to start the {self.what} again."
                ) from err
            if number == 1:
                header = record.get("header") if isinstance(record, dict) else None
                if header != self.parameters:
                    raise ValueError(
                        f"{self.path} holds results of other {self.what} parameters "
                        f"({header!r} != {self.parameters!r}); results of different parameters "
                        "are never mixed. Use another path or delete the file."
                    )
                continue
            self.records[self.key(record)] = record

    def _write_line(self, record: dict[str, Any], mode: str = "a") -> None:
        with open(self.path, mode) as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def __contains__(self, key: Hashable) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def append(self, record: dict[str, Any]) -> None:
        """Write one finished point (flushed and fsynced before returning).

        Raises:
            ValueError: If a record with the same key is already stored.
        """
        key = self.key(record)
        if key in self.records:
            raise ValueError(f"point {key} is already in {self.path}.")
        self._write_line(record)
        self.records[key] = record

    def compute_missing(
        self,
        func: Callable[[Any], dict[str, Any]],
        items: Iterable[Any],
        item_key: Callable[[Any], Hashable],
        executor: Any = None,
        *,
        threads: int | None = None,
        progress: bool = True,
        desc: str = "points",
    ) -> int:
        """Compute ``func(item)`` for every item whose key is not stored yet, once per key.

        Each result is appended as soon as it is finished
        (:func:`analoglib.parallel.run_points`), so an interrupted run keeps every finished
        point and a rerun computes only the rest.

        Args:
            func: Pure function of one item returning its record (module-level for process
                pools and Dask).
            items: The items, in run order (duplicates run once).
            item_key: The key an item's record will have.
            executor: None, a ``concurrent.futures`` executor or a Dask client.
            threads: Torch threads per item (see :func:`~analoglib.parallel.run_points`).
            progress: Show a progress bar.
            desc: Label of the progress bar.

        Returns:
            The number of items computed.
        """
        # parallel imports utils, which imports this module: import at call time
        from analoglib.parallel import run_points

        todo, queued = [], set()
        for item in items:
            key = item_key(item)
            if key not in self.records and key not in queued:
                todo.append(item)
                queued.add(key)
        run_points(
            func,
            todo,
            lambda _item, record: self.append(record),
            executor,
            threads=threads,
            progress=progress,
            desc=desc,
        )
        return len(todo)

    def table(self) -> pd.DataFrame:
        """The finished points as a table (columns and order as configured)."""
        df = pd.DataFrame(list(self.records.values()), columns=self.columns)
        if self.sort_by:
            df = df.sort_values(self.sort_by, ignore_index=True)
        return df

    def __repr__(self) -> str:
        return f"JsonlStore({str(self.path)!r}, {len(self)} records)"
