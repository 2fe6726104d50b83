"""Exact single-process execution of a pipeline schedule, with digital or analog updates.

:class:`PipelineExecutor` runs the events of a :class:`~analoglib.pipeline.Schedule` in clock
order on the stages of a split ``nn.Sequential``:

* ``F`` stashes the stage's input activation (detached) and runs the stage forward without a
  graph; on the last stage the loss is recorded.
* ``B`` recomputes the stage forward from the stashed input **with the current weights** and
  back-propagates through it; the parameter gradient is added to the stage's accumulator and
  the input gradient goes to the stage before. Recomputing on the live weights is deliberate:
  analog weights are conductances, so an older version cannot be kept for the backward
  (no weight stashing). In the asynchronous pipeline the forward that produced the loss used
  weights ``M - 1 - s`` updates older than the backward's Jacobian at stage s. For a stage that
  is one linear layer followed by element-wise functions, only the element-wise derivatives
  differ from hardware that keeps its intermediate activations (they are evaluated on the
  recomputed, not the stored, pre-activations); the weight gradient uses the stashed input.
* ``U`` applies the mean of the accumulated gradients (one micro-batch in ``"async"`` and
  ``"none"`` with B = 1, the B micro-batches of a mini-batch in ``"sync"``) with the update
  rule to the weight matrices (parameters with 2 or more dimensions); biases and other
  parameters take a digital SGD step with the rule's ``lr``. Stages with trainable analog
  layers (:mod:`analoglib.nn.trainable`, a model converted with a ``TrainingConfig``) hold
  their weights as pulsed devices: their backward reads queue (x, d), and ``U`` applies the
  pulses of the queued micro-batches at ``lr / count`` (the mean, like the gradients), with the
  layer's own devices, algorithm and periphery.

With a mean-reduced loss and equal micro-batches, a synchronous update equals one mini-batch
SGD step on the mean loss of the union. Modules must be deterministic: dropout would draw new
masks in the recomputation and BatchNorm would update its statistics twice.

References:
    Wu et al. 2024/2026, arXiv 2410.15155; ``docs/pipeline.md#executor``,
    ``docs/pipeline.md#update-rules``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from analoglib.nn.trainable import AnalogTrainLayer
from analoglib.pipeline.schedule import CycleCost, Schedule, timeline
from analoglib.training.response import soft_bounds_update, tiki_taka_step

__all__ = [
    "AnalogSGD",
    "DigitalSGD",
    "PipelineExecutor",
    "PipelineResult",
    "TikiTaka",
    "UpdateRule",
    "apply_update",
]


class UpdateRule(Protocol):
    """How a weight matrix takes its gradient step.

    Attributes:
        lr: Learning rate; also used for the digital SGD step of biases and other parameters.
    """

    lr: float

    def update(self, weight: Tensor, grad: Tensor, state: dict[str, Tensor]) -> None:
        """Change ``weight`` in place from the mean gradient ``grad`` (same shape).

        ``state`` is this weight's own dictionary, kept by the executor between updates.
        """
        ...


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} = {value!r} is not allowed: expected a number > 0.")


@dataclass
class DigitalSGD:
    """Plain SGD, ``W <- W - lr * g``.

    References:
        ``docs/pipeline.md#update-rules``.
    """

    lr: float

    def __post_init__(self) -> None:
        _check_positive("lr", self.lr)

    def update(self, weight: Tensor, grad: Tensor, state: dict[str, Tensor]) -> None:
        weight.add_(grad, alpha=-self.lr)


@dataclass
class AnalogSGD:
    """Analog SGD on soft-bounds devices: ``W <- W + D - |D| * W / tau`` with ``D = -lr * g``.

    Attributes:
        lr: Learning rate.
        tau: Soft bound in weight units (``inf`` gives digital SGD).

    References:
        Wu et al. 2024 (NeurIPS, Analog SGD); ``docs/pipeline.md#update-rules``.
    """

    lr: float
    tau: float

    def __post_init__(self) -> None:
        _check_positive("lr", self.lr)
        _check_positive("tau", self.tau)

    def update(self, weight: Tensor, grad: Tensor, state: dict[str, Tensor]) -> None:
        weight.copy_(soft_bounds_update(weight, -self.lr * grad, self.tau))


@dataclass
class TikiTaka:
    """Tiki-Taka at the response-function level (both arrays soft-bounded at ``+-tau``).

    Per weight the executor keeps the fast array A (starts at 0) and the slow array C (starts
    at the weight). Each update steps A with ``-lr * g`` and C with ``transfer_lr * A`` (see
    :func:`analoglib.training.response.tiki_taka_step`); the network uses W = C, so the
    gradient is taken at C.

    Attributes:
        lr: Learning rate of the fast array.
        transfer_lr: Rate of the transfer from A to C per update.
        tau: Soft bound of both arrays in weight units.

    References:
        Gokmen & Haensch 2020; ``docs/pipeline.md#update-rules``.
    """

    lr: float
    transfer_lr: float
    tau: float

    def __post_init__(self) -> None:
        _check_positive("lr", self.lr)
        _check_positive("transfer_lr", self.transfer_lr)
        _check_positive("tau", self.tau)

    def update(self, weight: Tensor, grad: Tensor, state: dict[str, Tensor]) -> None:
        if "fast" not in state:
            state["fast"] = torch.zeros_like(weight)
            state["slow"] = weight.detach().clone()
        state["fast"], state["slow"] = tiki_taka_step(
            state["fast"], state["slow"], grad, self.lr, self.transfer_lr, self.tau
        )
        weight.copy_(state["slow"])


@dataclass
class PipelineResult:
    """What one :meth:`PipelineExecutor.run` measured.

    Attributes:
        history: One dict per micro-batch at its loss (last-stage forward): ``cycle`` (end of
            that forward, cycles since the executor started), ``samples`` (samples whose loss
            was computed so far, since the executor started), ``loss`` (float), ``micro_batch``.
        evals: One dict per evaluation: ``cycle``, ``samples`` and the ``eval_fn`` metrics.
        staleness: ``(stage, micro_batch) -> updates applied by the stage between the
            micro-batch's forward and its backward``, counted by the executor.
        cycles: Clock cycles of this run.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    staleness: dict[tuple[int, int], int] = field(default_factory=dict)
    cycles: float = 0.0


def apply_update(
    rule: UpdateRule,
    params: Sequence[nn.Parameter],
    grads: Sequence[Tensor],
    state: dict[nn.Parameter, dict[str, Tensor]],
) -> None:
    """One update of a stage: the rule on weight matrices, digital SGD on the other parameters.

    Shared by :class:`PipelineExecutor` and the distributed engine
    (:mod:`analoglib.pipeline.distributed`), so both apply exactly the same arithmetic.

    Args:
        rule: The update rule of the weight matrices (parameters with 2 or more dimensions).
        params: The stage's trainable parameters, changed in place.
        grads: The mean gradient of each parameter (same shapes).
        state: Per-parameter state of the rule (e.g. Tiki-Taka's arrays), filled on first use.

    References:
        ``docs/pipeline.md#update-rules``.
    """
    with torch.no_grad():
        for p, g in zip(params, grads):
            if p.ndim >= 2:
                rule.update(p.data, g, state.setdefault(p, {}))
            else:
                p.data.add_(g, alpha=-rule.lr)


class PipelineExecutor:
    """Runs schedules on pipeline stages and keeps the training state between runs.

    Args:
        stages: The M stages (e.g. from :func:`~analoglib.pipeline.partition`), in order.
        rule: The update rule of the weight matrices (:class:`DigitalSGD`,
            :class:`AnalogSGD`, :class:`TikiTaka`).
        loss_fn: ``loss_fn(output, target)``, a scalar (use mean reduction for the
            synchronous mini-batch equivalence).

    Attributes:
        state: Per-parameter state of the rule (e.g. Tiki-Taka's A and C), by parameter.
        versions: Updates applied so far per stage.
        cycles: Clock cycles run so far (the offset of the next run's clock).
        samples: Samples whose loss was computed so far.

    References:
        ``docs/pipeline.md#executor``.
    """

    def __init__(
        self,
        stages: Sequence[nn.Module],
        rule: UpdateRule,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
    ) -> None:
        if len(stages) < 1:
            raise ValueError("stages = [] is not allowed: expected at least one stage.")
        self.stages = list(stages)
        self.rule = rule
        self.loss_fn = loss_fn
        self.state: dict[nn.Parameter, dict[str, Tensor]] = {}
        self.versions = [0] * len(self.stages)
        self.cycles = 0.0
        self.samples = 0

    def run(
        self,
        schedule: Schedule,
        batches: Sequence[tuple[Tensor, Tensor]],
        cost: CycleCost | None = None,
        eval_fn: Callable[[], dict[str, Any]] | None = None,
        eval_every: int = 0,
    ) -> PipelineResult:
        """Execute ``schedule`` on ``batches`` (micro-batch j is ``batches[j]``).

        Args:
            schedule: A schedule for ``len(stages)`` stages and ``len(batches)`` micro-batches.
            batches: ``(input, target)`` per micro-batch.
            cost: Durations for the clock (``None``: unit F and B, free U).
            eval_fn: Called without arguments after the input stage's first update at or
                after every ``eval_every`` micro-batches, and at the end; returns metrics. (In
                ``"async"`` the later stages are then mid-way through their micro-batches.)
            eval_every: Evaluation period in micro-batches (0: only at the end, if
                ``eval_fn`` is given).

        Returns:
            The :class:`PipelineResult` of this run.

        Raises:
            ValueError: If the schedule does not match the stages or the batches, or
                ``eval_every`` is negative.
        """
        m, n = len(self.stages), len(batches)
        if schedule.num_stages != m:
            raise ValueError(
                f"schedule.num_stages = {schedule.num_stages} is not allowed: the executor has "
                f"{m} stages."
            )
        if schedule.num_microbatches != n:
            raise ValueError(
                f"schedule.num_microbatches = {schedule.num_microbatches} is not allowed: "
                f"{n} batches were given."
            )
        if eval_every < 0:
            raise ValueError(f"eval_every = {eval_every!r} is not allowed: expected >= 0.")
        times = timeline(schedule, cost)
        result = PipelineResult()
        waiting: list[dict[int, Tensor]] = [{} for _ in range(m)]  # inputs before their F
        stashed: list[dict[int, Tensor]] = [{} for _ in range(m)]  # inputs between F and B
        forward_version: list[dict[int, int]] = [{} for _ in range(m)]
        grad_in: list[dict[int, Tensor]] = [{} for _ in range(m)]  # dL/d(stage output)
        params = [[p for p in stage.parameters() if p.requires_grad] for stage in self.stages]
        accum: list[list[Tensor] | None] = [None] * m
        counts = [0] * m
        done_input_stage, next_eval = 0, eval_every  # backwards of stage 0; next evaluation

        for event, (_, end) in zip(schedule.events, times):
            s, j = event.stage, event.micro_batch
            clock = self.cycles + end
            if event.op == "F":
                x = batches[j][0] if s == 0 else waiting[s].pop(j)
                stashed[s][j] = x.detach()
                forward_version[s][j] = self.versions[s]
                with torch.no_grad():
                    out = self.stages[s](x)
                if s < m - 1:
                    waiting[s + 1][j] = out
                else:
                    self.samples += len(batches[j][1])
                    loss = float(self.loss_fn(out, batches[j][1]))
                    result.history.append(
                        {"cycle": clock, "samples": self.samples, "loss": loss, "micro_batch": j}
                    )
            elif event.op == "B":
                grads = self._backward(s, j, stashed[s].pop(j), batches[j][1], grad_in, params[s])
                result.staleness[s, j] = self.versions[s] - forward_version[s].pop(j)
                current = accum[s]
                if current is None:
                    accum[s] = grads
                else:
                    for total, g in zip(current, grads):
                        total.add_(g)
                counts[s] += 1
                done_input_stage += s == 0
            else:
                current = accum[s]
                if current is not None:
                    with torch.no_grad():
                        self._apply(s, params[s], [g / counts[s] for g in current], counts[s])
                accum[s], counts[s] = None, 0
                self.versions[s] += 1
                if s == 0 and eval_fn is not None and eval_every and done_input_stage >= next_eval:
                    result.evals.append(self._evaluate(eval_fn, clock))
                    next_eval = (done_input_stage // eval_every + 1) * eval_every

        result.cycles = max(end for _, end in times)
        self.cycles += result.cycles
        if eval_fn is not None and (not result.evals or result.evals[-1]["cycle"] < self.cycles):
            result.evals.append(self._evaluate(eval_fn, self.cycles))
        return result

    def _backward(
        self,
        s: int,
        j: int,
        x: Tensor,
        target: Tensor,
        grad_in: list[dict[int, Tensor]],
        params: list[nn.Parameter],
    ) -> list[Tensor]:
        """Recompute stage ``s`` on the live weights, back-propagate, pass dL/dx upstream."""
        needs_input_grad = s > 0
        x = x.detach().requires_grad_(needs_input_grad)
        with torch.enable_grad():
            out = self.stages[s](x)
            inputs = ([x] if needs_input_grad else []) + params
            if s == len(self.stages) - 1:
                grads = torch.autograd.grad(self.loss_fn(out, target), inputs)
            else:
                grads = torch.autograd.grad(out, inputs, grad_outputs=grad_in[s].pop(j))
        if needs_input_grad:
            grad_in[s - 1][j] = grads[0]
            return list(grads[1:])
        return list(grads)

    def _apply(self, s: int, params: list[nn.Parameter], grads: list[Tensor], count: int) -> None:
        apply_update(self.rule, params, grads, self.state)
        # trainable analog layers (pulsed devices) queued the (x, d) of every backward since the
        # last update; their pulses carry the mean over the micro-batches like the gradients
        for module in self.stages[s].modules():
            if isinstance(module, AnalogTrainLayer):
                module.apply_update(self.rule.lr / count)

    def _evaluate(self, eval_fn: Callable[[], dict[str, Any]], clock: float) -> dict[str, Any]:
        with torch.no_grad():
            metrics = eval_fn()
        return {"cycle": clock, "samples": self.samples, **metrics}
