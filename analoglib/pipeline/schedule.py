"""Pipeline schedules: per-stage action lists, their clock timing, closed forms and validation.

A model split into M stages (stage index ``s = 0 .. M - 1``, input stage first; the paper's
1-based stage number is ``m = s + 1``) trains on N micro-batches. Each stage runs a list of
actions in order: ``F`` (forward of one micro-batch), ``B`` (backward of one micro-batch) and
``U`` (apply the accumulated gradient to the stage's weights). The clock timing follows from
the action lists and the dependencies alone (list scheduling): an action starts as soon as its
stage is free and its inputs exist. With the default unit costs every F and B takes one clock
cycle and U takes none, which gives the event log of :func:`build_schedule`.

Modes (``docs/pipeline.md#schedules``):

* ``"none"``: no pipelining. One micro-batch at a time goes forward through stages 0 .. M-1 and
  backward through M-1 .. 0, so only one stage is busy; 2M cycles per micro-batch. The weights
  are updated after every B micro-batches (``microbatches_per_minibatch``; 1 is per-sample
  training as in the authors' figure). It is ``"sync"`` without overlap.
* ``"sync"``: synchronous pipeline with a flush. The B micro-batches of a mini-batch all flow
  forward, then all flow backward (``order="gpipe"``; ``order="1f1b"`` interleaves them as in
  the authors' figure, same cycle count), every stage updates once after its last backward of
  the mini-batch, and the next mini-batch starts after the flush. All micro-batches of a
  mini-batch see the same weights: 2(B + M - 1) cycles per mini-batch.
* ``"async"``: asynchronous pipeline (PipeDream-style 1F1B without flush and without weight
  stashing). Stage s does ``M - s`` forwards, then alternates backward and forward, and
  updates right after every backward. Between the forward and the backward of a micro-batch,
  stage s applies ``M - 1 - s`` updates (``M - m`` in the paper's numbering) in steady state,
  fewer during the fill (``min(j, M - 1 - s)`` for micro-batch j). Total 2(N + M - 1) cycles.

References:
    Wu et al. 2024/2026, arXiv 2410.15155 (schedules and clock cycles);
    ``docs/pipeline.md#schedules``, ``docs/pipeline.md#clock-cycles``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "MODES",
    "OPS",
    "Action",
    "CycleCost",
    "Event",
    "Schedule",
    "build_schedule",
    "closed_form_cycles",
    "cycles_per_sample",
    "makespan",
    "stage_actions",
    "timeline",
    "validate_schedule",
]

#: Schedule modes.
MODES: tuple[str, ...] = ("none", "sync", "async")
#: Operations: forward, backward, update.
OPS: tuple[str, ...] = ("F", "B", "U")
_ORDERS = ("gpipe", "1f1b")

#: One step of a stage: ``(op, micro_batch)``; for ``"U"`` the micro-batch whose backward
#: completed the accumulated gradient.
Action = tuple[str, int]


@dataclass(frozen=True)
class Event:
    """One action of one stage on the clock.

    Attributes:
        cycle: Clock cycle in which the action starts (unit costs; a U shares the cycle of the
            backward before it, because it takes no cycle).
        stage: Stage index s (0 is the input stage).
        op: ``"F"``, ``"B"`` or ``"U"``.
        micro_batch: Micro-batch index j (for ``"U"``: the last micro-batch in the update).
        weight_version: Number of updates the stage has applied before this action, i.e. the
            version of the weights the action uses (for ``"U"``: the version it replaces).
    """

    cycle: int
    stage: int
    op: str
    micro_batch: int
    weight_version: int


@dataclass(frozen=True)
class CycleCost:
    """Duration of each action in clock cycles: ``op cost * stage scale``.

    Attributes:
        forward: Cycles of one F (default 1).
        backward: Cycles of one B (default 1; e.g. 2 for a backward twice as slow).
        update: Cycles of one U (default 0: the update is folded into the backward's cycle).
        stage_scale: Optional factor per stage (e.g. its tile count relative to the others);
            ``None`` means 1 for every stage.

    References:
        ``docs/pipeline.md#clock-cycles``.
    """

    forward: float = 1.0
    backward: float = 1.0
    update: float = 0.0
    stage_scale: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("forward", "backward"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} = {value!r} is not allowed: expected cycles > 0.")
        if not self.update >= 0:
            raise ValueError(f"update = {self.update!r} is not allowed: expected cycles >= 0.")
        if self.stage_scale is not None and not all(f > 0 for f in self.stage_scale):
            raise ValueError(
                f"stage_scale = {self.stage_scale!r} is not allowed: expected factors > 0."
            )

    def of(self, op: str, stage: int) -> float:
        """Cycles of ``op`` on ``stage``."""
        base = {"F": self.forward, "B": self.backward, "U": self.update}[op]
        return base * (1.0 if self.stage_scale is None else self.stage_scale[stage])


@dataclass
class Schedule:
    """A schedule: the per-stage action lists and their unit-cost event log.

    Attributes:
        mode: ``"none"``, ``"sync"`` or ``"async"``.
        num_stages: M.
        num_microbatches: N.
        microbatches_per_minibatch: B (micro-batches per update in ``"none"`` and ``"sync"``).
        actions: ``actions[s]`` is stage s's action list, in execution order.
        events: Every action as an :class:`Event`, in clock order (cycle, stage, position in
            the stage's list); a correct execution order for a single process.

    References:
        ``docs/pipeline.md#schedules``.
    """

    mode: str
    num_stages: int
    num_microbatches: int
    microbatches_per_minibatch: int
    actions: list[list[Action]]
    events: list[Event]

    @property
    def cycles(self) -> int:
        """Total clock cycles (unit costs): one past the last cycle with an F or B."""
        return max(e.cycle for e in self.events if e.op != "U") + 1

    def staleness(self) -> dict[tuple[int, int], int]:
        """``(stage, micro_batch) -> version at B - version at F`` from the event log."""
        forward = {(e.stage, e.micro_batch): e.weight_version for e in self.events if e.op == "F"}
        return {
            (e.stage, e.micro_batch): e.weight_version - forward[e.stage, e.micro_batch]
            for e in self.events
            if e.op == "B"
        }


def _check_int(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} = {value!r} is not allowed: expected an integer >= {low}.")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode = {mode!r} is not allowed: expected one of {MODES}.")


def _minibatches(num_microbatches: int, per_minibatch: int) -> list[range]:
    """Consecutive micro-batch ranges of at most ``per_minibatch`` (the last may be shorter)."""
    return [
        range(start, min(start + per_minibatch, num_microbatches))
        for start in range(0, num_microbatches, per_minibatch)
    ]


def _one_f_one_b(micro_batches: range, warmup: int, update_each: bool) -> list[Action]:
    """``warmup`` forwards, then backward/forward pairs, then the remaining backwards."""
    forwards, backwards = list(micro_batches), list(micro_batches)
    out: list[Action] = [("F", j) for j in forwards[:warmup]]
    next_forward = warmup
    for j in backwards:
        out.append(("B", j))
        if update_each:
            out.append(("U", j))
        if next_forward < len(forwards):
            out.append(("F", forwards[next_forward]))
            next_forward += 1
    return out


def stage_actions(
    mode: str,
    num_stages: int,
    num_microbatches: int,
    microbatches_per_minibatch: int = 1,
    order: str = "gpipe",
) -> list[list[Action]]:
    """The action list of every stage.

    Args:
        mode: ``"none"``, ``"sync"`` or ``"async"``.
        num_stages: Number of stages M (>= 1).
        num_microbatches: Number of micro-batches N (>= 1).
        microbatches_per_minibatch: B, micro-batches per update (>= 1); ignored by ``"async"``,
            which updates after every micro-batch. A last, shorter mini-batch is allowed.
        order: Order inside a synchronous mini-batch: ``"gpipe"`` (all forwards, then all
            backwards) or ``"1f1b"`` (interleaved); ignored by the other modes.

    Returns:
        ``actions[s]``, a list of ``(op, micro_batch)`` per stage.

    Raises:
        ValueError: If an argument is outside the allowed values.

    References:
        ``docs/pipeline.md#schedules``.
    """
    _check_mode(mode)
    _check_int("num_stages", num_stages, 1)
    _check_int("num_microbatches", num_microbatches, 1)
    _check_int("microbatches_per_minibatch", microbatches_per_minibatch, 1)
    if order not in _ORDERS:
        raise ValueError(f"order = {order!r} is not allowed: expected one of {_ORDERS}.")
    actions: list[list[Action]] = []
    for s in range(num_stages):
        stage: list[Action] = []
        if mode == "async":
            # M - s micro-batches in flight at stage s keep every stage busy after the fill
            stage = _one_f_one_b(range(num_microbatches), num_stages - s, update_each=True)
        else:
            for mb in _minibatches(num_microbatches, microbatches_per_minibatch):
                if mode == "none":
                    # one micro-batch in flight: forward and backward, then the next one
                    for j in mb:
                        stage += [("F", j), ("B", j)]
                elif order == "gpipe":
                    stage += [("F", j) for j in mb] + [("B", j) for j in mb]
                else:
                    stage += _one_f_one_b(mb, num_stages - s, update_each=False)
                stage.append(("U", mb[-1]))
        actions.append(stage)
    return actions


def _dependencies(
    op: str, stage: int, j: int, num_stages: int, flush_after: dict[int, int]
) -> list[tuple[str, int, int]]:
    """Actions of other stages that must finish before ``(op, stage, j)`` may start."""
    if op == "F":
        deps = [("F", stage - 1, j)] if stage > 0 else []
        if stage == 0 and j in flush_after:  # first micro-batch after a flush
            deps += [("U", s, flush_after[j]) for s in range(num_stages)]
        return deps
    if op == "B":
        return [("B", stage + 1, j)] if stage < num_stages - 1 else []
    return []


def _timing(
    actions: Sequence[Sequence[Action]], flush_after: dict[int, int], cost: CycleCost
) -> list[list[tuple[float, float]]]:
    """``(start, end)`` of every action by list scheduling on fixed per-stage orders.

    An action starts when its stage has finished the previous action and every dependency has
    finished; this is the earliest start, so the last end is the makespan.
    """
    num_stages = len(actions)
    if cost.stage_scale is not None and len(cost.stage_scale) != num_stages:
        raise ValueError(
            f"stage_scale = {cost.stage_scale!r} is not allowed: expected {num_stages} factors "
            "(one per stage)."
        )
    end: dict[tuple[str, int, int], float] = {}
    times: list[list[tuple[float, float]]] = [[] for _ in actions]
    free = [0.0] * num_stages
    position = [0] * num_stages
    progress = True
    while progress:
        progress = False
        for s in range(num_stages):
            while position[s] < len(actions[s]):
                op, j = actions[s][position[s]]
                deps = _dependencies(op, s, j, num_stages, flush_after)
                if any(d not in end for d in deps):
                    break
                start = max([free[s]] + [end[d] for d in deps])
                finish = start + cost.of(op, s)
                end[op, s, j] = finish
                times[s].append((start, finish))
                free[s] = finish
                position[s] += 1
                progress = True
    if any(position[s] < len(actions[s]) for s in range(num_stages)):
        raise ValueError("actions: the per-stage action lists deadlock (a dependency never runs).")
    return times


def _flush_points(mode: str, num_microbatches: int, per_minibatch: int) -> dict[int, int]:
    """First micro-batch of each later mini-batch -> last micro-batch of the one before."""
    if mode == "async":
        return {}
    return {mb[0]: mb[0] - 1 for mb in _minibatches(num_microbatches, per_minibatch)[1:]}


def build_schedule(
    mode: str,
    num_stages: int,
    num_microbatches: int,
    microbatches_per_minibatch: int = 1,
    order: str = "gpipe",
) -> Schedule:
    """The schedule and its unit-cost event log (F and B one cycle each, U none).

    Args:
        mode: ``"none"``, ``"sync"`` or ``"async"``.
        num_stages: Number of stages M (>= 1).
        num_microbatches: Number of micro-batches N (>= 1).
        microbatches_per_minibatch: B, micro-batches per update (ignored by ``"async"``).
        order: ``"gpipe"`` or ``"1f1b"`` inside a synchronous mini-batch.

    Returns:
        The :class:`Schedule`; ``schedule.cycles`` equals :func:`closed_form_cycles`.

    Raises:
        ValueError: If an argument is outside the allowed values.

    References:
        ``docs/pipeline.md#schedules``.
    """
    actions = stage_actions(mode, num_stages, num_microbatches, microbatches_per_minibatch, order)
    flush = _flush_points(mode, num_microbatches, microbatches_per_minibatch)
    times = _timing(actions, flush, CycleCost())
    rows = []
    for s, (stage, stage_times) in enumerate(zip(actions, times)):
        version = 0
        for position, ((op, j), (start, _)) in enumerate(zip(stage, stage_times)):
            rows.append((int(start), s, position, Event(int(start), s, op, j, version)))
            version += op == "U"
    rows.sort(key=lambda row: row[:3])
    events = [row[3] for row in rows]
    return Schedule(mode, num_stages, num_microbatches, microbatches_per_minibatch, actions, events)


def timeline(schedule: Schedule, cost: CycleCost | None = None) -> list[tuple[float, float]]:
    """``(start, end)`` in cycles of each event of ``schedule.events`` under ``cost``.

    The per-stage order and the dependencies stay those of the schedule; only durations
    change (list scheduling: every action starts as early as its stage and inputs allow).

    Args:
        schedule: A schedule from :func:`build_schedule`.
        cost: Durations; ``None`` means unit F and B and free U.

    Returns:
        One ``(start, end)`` per event, aligned with ``schedule.events``.

    Raises:
        ValueError: If ``cost.stage_scale`` does not have one factor per stage.

    References:
        ``docs/pipeline.md#clock-cycles``.
    """
    flush = _flush_points(
        schedule.mode, schedule.num_microbatches, schedule.microbatches_per_minibatch
    )
    times = _timing(schedule.actions, flush, cost or CycleCost())
    lookup: dict[tuple[int, str, int], tuple[float, float]] = {}
    for s, (stage, stage_times) in enumerate(zip(schedule.actions, times)):
        for (op, j), t in zip(stage, stage_times):
            lookup[s, op, j] = t
    return [lookup[e.stage, e.op, e.micro_batch] for e in schedule.events]


def makespan(schedule: Schedule, cost: CycleCost | None = None) -> float:
    """Cycles from the first action to the end of the last one under ``cost``.

    References:
        ``docs/pipeline.md#clock-cycles``.
    """
    return max(end for _, end in timeline(schedule, cost))


def closed_form_cycles(
    mode: str, num_stages: int, num_microbatches: int, microbatches_per_minibatch: int = 1
) -> int:
    """Total clock cycles with unit F and B costs (U free).

    * ``"none"``: ``2 M N`` (2M per micro-batch, one stage busy at a time);
    * ``"sync"``: ``sum over mini-batches of 2 (B_k + M - 1)``, i.e. ``2 K (B + M - 1)`` for
      ``N = K B`` (fill, B forwards, drain, the same for the backwards);
    * ``"async"``: ``2 (N + M - 1)`` (2 per micro-batch plus one fill and one drain of the
      M - 1 other stages).

    Args:
        mode: ``"none"``, ``"sync"`` or ``"async"``.
        num_stages: M.
        num_microbatches: N.
        microbatches_per_minibatch: B (used by ``"sync"`` only).

    Returns:
        The number of clock cycles.

    Raises:
        ValueError: If an argument is outside the allowed values.

    References:
        ``docs/pipeline.md#clock-cycles``.
    """
    _check_mode(mode)
    _check_int("num_stages", num_stages, 1)
    _check_int("num_microbatches", num_microbatches, 1)
    _check_int("microbatches_per_minibatch", microbatches_per_minibatch, 1)
    m, n = num_stages, num_microbatches
    if mode == "none":
        return 2 * m * n
    if mode == "async":
        return 2 * (n + m - 1)
    return sum(2 * (len(mb) + m - 1) for mb in _minibatches(n, microbatches_per_minibatch))


def cycles_per_sample(mode: str, num_stages: int, microbatches_per_minibatch: int = 1) -> float:
    """Steady-state clock cycles per micro-batch (unit F and B costs).

    ``"none"``: 2M; ``"sync"``: 2(B + M - 1)/B; ``"async"``: 2. Ratios give the speed-ups at
    equal micro-batches: async over sync ``(B + M - 1)/B``, async over none ``M``, sync over
    none ``M B/(B + M - 1)``. Async reaches its rate only when N >> M (the fill and drain add
    2(M - 1) cycles once).

    Raises:
        ValueError: If an argument is outside the allowed values.

    References:
        ``docs/pipeline.md#clock-cycles``.
    """
    _check_mode(mode)
    _check_int("num_stages", num_stages, 1)
    _check_int("microbatches_per_minibatch", microbatches_per_minibatch, 1)
    m, b = num_stages, microbatches_per_minibatch
    if mode == "none":
        return float(2 * m)
    if mode == "async":
        return 2.0
    return 2 * (b + m - 1) / b


def validate_schedule(schedule: Schedule) -> None:
    """Check a schedule's event log; raise on the first violation.

    Rules: every stage runs one F and one B of every micro-batch; at most one F or B per stage
    per cycle; F of stage s after F of stage s - 1 (same micro-batch); B of stage s after B of
    stage s + 1; B after F on the same stage (for the last stage this is the loss); weight
    versions count the stage's earlier updates.

    Raises:
        ValueError: Naming the violated rule and the events involved.

    References:
        ``docs/pipeline.md#schedules``.
    """
    m, n = schedule.num_stages, schedule.num_microbatches
    when: dict[tuple[str, int, int], int] = {}
    busy: set[tuple[int, int]] = set()
    for e in schedule.events:
        if e.op not in OPS or not 0 <= e.stage < m or not 0 <= e.micro_batch < n:
            raise ValueError(f"events: {e} has an op, stage or micro-batch out of range.")
        if e.op == "U":
            continue
        if (e.op, e.stage, e.micro_batch) in when:
            raise ValueError(f"events: {e} is a repeated {e.op} of this micro-batch and stage.")
        if (e.stage, e.cycle) in busy:
            raise ValueError(f"events: {e} is a second F/B on stage {e.stage} in one cycle.")
        busy.add((e.stage, e.cycle))
        when[e.op, e.stage, e.micro_batch] = e.cycle
    missing = [
        (op, s, j) for op in "FB" for s in range(m) for j in range(n) if (op, s, j) not in when
    ]
    if missing:
        raise ValueError(f"events: {len(missing)} F/B actions are missing, e.g. {missing[0]}.")
    for s in range(m):
        for j in range(n):
            if s > 0 and when["F", s, j] <= when["F", s - 1, j]:
                raise ValueError(f"events: F of stage {s} before F of stage {s - 1} (mb {j}).")
            if s < m - 1 and when["B", s, j] <= when["B", s + 1, j]:
                raise ValueError(f"events: B of stage {s} before B of stage {s + 1} (mb {j}).")
            if when["B", s, j] <= when["F", s, j]:
                raise ValueError(f"events: B of stage {s} before its F (mb {j}).")
    version = [0] * m
    for e in schedule.events:
        if e.weight_version != version[e.stage]:
            raise ValueError(
                f"events: {e} has weight_version {e.weight_version}, expected {version[e.stage]}."
            )
        version[e.stage] += e.op == "U"
