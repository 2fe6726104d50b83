"""Pipeline training on ``torch.distributed.pipelining``: one stage per process.

The same training as :class:`~analoglib.pipeline.PipelineExecutor`, but every stage lives in
its own process (``gloo`` on CPU, ``NCCL`` on GPUs) and activations and gradients travel
between processes. Each rank wraps its stage in :class:`UpdatingStage`, whose custom autograd
function does what the executor does:

* forward: run the stage without a graph, keep only the stage's input (as the executor's F);
* backward: recompute the stage on the **live** weights from the kept input, back-propagate the
  incoming gradient (as the executor's B, no weight stashing) and then, in ``"async"`` mode,
  apply the update rule to the stage's parameters right there, inside the backward (U).

``"async"`` runs ``Schedule1F1B``: stage s does ``min(N, M - s)`` forwards, then alternates
backward and forward, exactly the executor's asynchronous action list for the N micro-batches
of one :meth:`DistributedPipeline.step`. With the update inside every backward, stage s applies
``M - 1 - s`` updates between the forward and the backward of a micro-batch, as in the
executor. What differs from the executor's one continuous schedule: ``Schedule1F1B`` drains
the pipeline at the end of every ``step()``, so consecutive steps meet at a flush (the next
step's fill starts after the last backward). One step over all N micro-batches is the exact
no-flush schedule; k steps of N/k micro-batches equal k executor runs of N/k micro-batches.

``"sync"`` runs the same ``Schedule1F1B`` over the B micro-batches of a mini-batch while the
backward only accumulates the parameter gradients (``.grad``, divided by B by the schedule);
after the schedule's step, :meth:`DistributedPipeline.step` applies one update with the rule
(the flush) and clears the gradients. This is the executor's ``"sync"`` mode with
``order="1f1b"`` and one step per mini-batch.

Shape inference pitfall: without explicit shapes, the first ``step()`` of a pipelining schedule
runs a metadata-inference pass whose backward runs the stage's backward on an uninitialised
input on every stage after the first, which would apply one spurious update there. The engine
therefore always passes the stages' input and output shapes (:func:`stage_examples`);
``infer_shapes=True`` exists only to show the spurious update (tests).

Launch on M processes with ``torchrun --nproc-per-node M -m analoglib.pipeline.distributed``
(:func:`main`); ``Schedule1F1B`` needs N >= M micro-batches per step.

References:
    Wu et al. 2024/2026, arXiv 2410.15155; ``docs/pipeline.md#distributed-engine``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from analoglib.pipeline.executor import (
    AnalogSGD,
    DigitalSGD,
    TikiTaka,
    UpdateRule,
    apply_update,
)
from analoglib.pipeline.stages import partition

__all__ = [
    "ENGINE_MODES",
    "DistributedPipeline",
    "StageUpdater",
    "UpdatingStage",
    "init_process_group_from_env",
    "main",
    "pipelining_available",
    "stage_examples",
]

#: Modes of the distributed engine (``"none"`` is the executor's, without a pipeline).
ENGINE_MODES: tuple[str, ...] = ("sync", "async")


def pipelining_available() -> bool:
    """Whether ``torch.distributed`` and ``torch.distributed.pipelining`` can be used here."""
    if not dist.is_available():
        return False
    try:
        import torch.distributed.pipelining  # noqa: F401
    except ImportError:
        return False
    return True


class StageUpdater:
    """The update rule of one stage, applied from inside the stage's backward.

    Args:
        params: The stage's trainable parameters (changed in place).
        rule: :class:`~analoglib.pipeline.DigitalSGD`, :class:`~analoglib.pipeline.AnalogSGD`
            or :class:`~analoglib.pipeline.TikiTaka`.
        mode: ``"async"`` (update inside every backward) or ``"sync"`` (gradients accumulate
            into ``.grad``; :meth:`flush` updates).

    Attributes:
        version: Updates applied so far.
        backwards: Backward passes run so far (including spurious ones).
        staleness: Per backward, in order: updates applied between the micro-batch's forward
            and this backward.
        state: Per-parameter state of the rule (e.g. Tiki-Taka's arrays).

    References:
        ``docs/pipeline.md#distributed-engine``.
    """

    def __init__(self, params: Sequence[nn.Parameter], rule: UpdateRule, mode: str) -> None:
        if mode not in ENGINE_MODES:
            raise ValueError(f"mode = {mode!r} is not allowed: expected one of {ENGINE_MODES}.")
        self.params = list(params)
        self.rule = rule
        self.mode = mode
        self.version = 0
        self.backwards = 0
        self.staleness: list[int] = []
        self.state: dict[nn.Parameter, dict[str, Tensor]] = {}

    def on_backward(self, grads: list[Tensor], forward_version: int) -> None:
        """Record one backward; in ``"async"`` mode apply ``grads`` (one micro-batch) now."""
        self.backwards += 1
        self.staleness.append(self.version - forward_version)
        if self.mode == "async":
            apply_update(self.rule, self.params, grads, self.state)
            self.version += 1

    def flush(self) -> None:
        """``"sync"``: one update with the mean gradient in ``.grad``, then clear ``.grad``."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        apply_update(self.rule, self.params, grads, self.state)
        for p in self.params:
            p.grad = None
        self.version += 1


class _RecomputeAndUpdate(torch.autograd.Function):
    """Forward without a graph; backward recomputed on the live weights, then the update."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, stage: UpdatingStage, *params: Tensor) -> Tensor:
        ctx.stage = stage
        ctx.forward_version = stage.updater.version
        ctx.save_for_backward(x)
        with torch.no_grad():
            return stage.module(x)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        stage: UpdatingStage = ctx.stage
        params = stage.updater.params
        needs_input_grad = bool(ctx.needs_input_grad[0])
        x = x.detach().requires_grad_(needs_input_grad)
        with torch.enable_grad():
            out = stage.module(x)  # the live weights: conductances cannot be stashed
            inputs = ([x] if needs_input_grad else []) + params
            grads = list(torch.autograd.grad(out, inputs, grad_outputs=grad_out))
        grad_x = grads.pop(0) if needs_input_grad else None
        stage.updater.on_backward(grads, ctx.forward_version)
        if stage.updater.mode == "sync":  # autograd accumulates them into .grad
            return (grad_x, None, *grads)
        return (grad_x, None, *([None] * len(params)))


class UpdatingStage(nn.Module):
    """A pipeline stage whose backward recomputes on the live weights and updates them.

    Args:
        module: The stage (e.g. one of :func:`~analoglib.pipeline.partition`'s).
        updater: Its :class:`StageUpdater` (built over ``module``'s trainable parameters).

    References:
        ``docs/pipeline.md#distributed-engine``.
    """

    def __init__(self, module: nn.Module, updater: StageUpdater) -> None:
        super().__init__()
        self.module = module
        self.updater = updater

    def forward(self, x: Tensor) -> Tensor:
        """The stage's output for a micro-batch ``x`` (the stage's input shape)."""
        out: Tensor = _RecomputeAndUpdate.apply(x, self, *self.updater.params)
        return out


def stage_examples(stages: Sequence[nn.Module], example: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Input and output of every stage for one micro-batch ``example`` (shapes, dtypes).

    The stages run forward without a graph (no update happens in a forward).

    Args:
        stages: The M stages in order.
        example: A micro-batch of the first stage's input, e.g. ``(micro_batch, features)``.

    Returns:
        ``[(input, output)]`` per stage, detached.
    """
    out: list[tuple[Tensor, Tensor]] = []
    x = example.detach()
    with torch.no_grad():
        for stage in stages:
            y = stage(x)
            out.append((x, y.detach()))
            x = y.detach()
    return out


class DistributedPipeline:
    """One rank's stage of a pipeline on ``torch.distributed.pipelining`` (``Schedule1F1B``).

    Args:
        stage: This rank's stage module.
        stage_index: Its index s (0 is the input stage); one stage per rank.
        num_stages: M (the process group's size).
        rule: Update rule of the weight matrices.
        loss_fn: ``loss_fn(output, target)`` with mean reduction (used on the last stage).
        mode: ``"async"`` (update inside every backward) or ``"sync"`` (update after the step).
        num_microbatches: N micro-batches per :meth:`step` (``"sync"``: B, the mini-batch);
            N >= M (``Schedule1F1B``).
        example: ``(input, output)`` of this stage for one micro-batch (:func:`stage_examples`);
            they give the shapes that keep the schedule from running a shape-inference pass.
        device: This rank's device.
        group: Process group (None: the default group).
        infer_shapes: Let the schedule infer the shapes on the first step instead (which runs
            a spurious backward, hence update, on every stage after the first). For tests.

    Attributes:
        updater: The stage's :class:`StageUpdater` (versions, staleness, rule state).

    Raises:
        ValueError: For an unknown ``mode`` or N < M.

    References:
        ``docs/pipeline.md#distributed-engine``.
    """

    def __init__(
        self,
        stage: nn.Module,
        stage_index: int,
        num_stages: int,
        rule: UpdateRule,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        mode: str,
        num_microbatches: int,
        example: tuple[Tensor, Tensor],
        device: torch.device,
        group: dist.ProcessGroup | None = None,
        infer_shapes: bool = False,
    ) -> None:
        from torch.distributed.pipelining import PipelineStage, Schedule1F1B

        if mode not in ENGINE_MODES:
            raise ValueError(f"mode = {mode!r} is not allowed: expected one of {ENGINE_MODES}.")
        if num_microbatches < num_stages:
            raise ValueError(
                f"num_microbatches = {num_microbatches} is not allowed: Schedule1F1B needs at "
                f"least num_stages = {num_stages} micro-batches per step."
            )
        params = [p for p in stage.parameters() if p.requires_grad]
        self.updater = StageUpdater(params, rule, mode)
        self.module = UpdatingStage(stage, self.updater).to(device)
        self.stage_index, self.num_stages, self.mode = stage_index, num_stages, mode
        x, y = (t.detach().to(device) for t in example)
        # the schedule derives the gradient shapes from these flags: the output's gradient
        # comes from the next stage (or the loss), the input's goes back to the stage before
        x.requires_grad_(stage_index > 0)
        y.requires_grad_(True)
        shapes: dict[str, Any] = {} if infer_shapes else {"input_args": x, "output_args": y}
        self.pipe_stage = PipelineStage(
            self.module, stage_index, num_stages, device, group=group, **shapes
        )
        # mean loss per micro-batch; "sync" divides the accumulated .grad by N (the mean)
        self.schedule = Schedule1F1B(
            self.pipe_stage, num_microbatches, loss_fn=loss_fn, scale_grads=mode == "sync"
        )

    @property
    def is_first(self) -> bool:
        """Whether this rank holds the input stage."""
        return self.stage_index == 0

    @property
    def is_last(self) -> bool:
        """Whether this rank holds the last stage (it computes the loss)."""
        return self.stage_index == self.num_stages - 1

    def step(self, inputs: Tensor | None = None, target: Tensor | None = None) -> list[float]:
        """Run N micro-batches through the pipeline (``"sync"``: then update once).

        Args:
            inputs: On the first stage, the N micro-batches concatenated along dim 0
                ``(N * micro_batch, ...)``; ignored elsewhere.
            target: On the last stage, the targets, concatenated the same way; ignored
                elsewhere.

        Returns:
            On the last stage, the loss of every micro-batch (in order); elsewhere ``[]``.

        Raises:
            ValueError: If the first stage gets no ``inputs`` or the last no ``target``.
        """
        if self.is_first and inputs is None:
            raise ValueError("inputs = None is not allowed on the first stage.")
        if self.is_last and target is None:
            raise ValueError("target = None is not allowed on the last stage.")
        args = (inputs,) if self.is_first else ()
        losses: list[Tensor] | None = [] if self.is_last else None
        self.schedule.step(
            *args, target=target if self.is_last else None, losses=losses, return_outputs=False
        )
        if self.mode == "sync":
            self.updater.flush()
        return [float(loss.detach()) for loss in losses] if losses is not None else []


def init_process_group_from_env() -> tuple[int, int, torch.device]:
    """Join the process group of a ``torchrun`` launch: NCCL on GPUs, else gloo.

    Returns:
        ``(rank, world_size, device)``; the device is ``cuda:<LOCAL_RANK>`` under NCCL.
    """
    use_cuda = torch.cuda.is_available() and dist.is_nccl_available()
    if use_cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def _rule(name: str, lr: float, tau: float, transfer_lr: float) -> UpdateRule:
    if name == "digital":
        return DigitalSGD(lr)
    if name == "analog":
        return AnalogSGD(lr, tau)
    if name == "tiki_taka":
        return TikiTaka(lr, transfer_lr, tau)
    raise ValueError(
        f"rule = {name!r} is not allowed: expected 'digital', 'analog' or 'tiki_taka'."
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Train an MLP on a synthetic teacher task with one stage per ``torchrun`` process.

    ``torchrun --nproc-per-node M -m analoglib.pipeline.distributed --mode async --rule analog``
    splits a Tanh MLP into M tile-balanced stages, trains it for ``--steps`` steps of
    ``--microbatches`` micro-batches and prints the mean loss of every step on the last rank.
    """
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--mode", default="async", choices=ENGINE_MODES)
    parser.add_argument("--rule", default="analog", choices=("digital", "analog", "tiki_taka"))
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--tau", type=float, default=0.8, help="soft bound, weight units")
    parser.add_argument("--transfer-lr", type=float, default=0.1)
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 64, 64, 10])
    parser.add_argument("--microbatches", type=int, default=16, help="per step, >= stages")
    parser.add_argument("--microbatch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    rank, world, device = init_process_group_from_env()
    try:
        torch.manual_seed(args.seed)  # every rank builds the same model and data
        layers: list[nn.Module] = []
        for a, b in zip(args.widths, args.widths[1:]):
            layers += [nn.Linear(a, b), nn.Tanh()]
        model = nn.Sequential(*layers[:-1])
        stages = partition(model, world)
        teacher = torch.randn(args.widths[0], args.widths[-1])
        n = args.microbatches * args.microbatch_size
        examples = stage_examples(stages, torch.zeros(args.microbatch_size, args.widths[0]))
        engine = DistributedPipeline(
            stages[rank],
            rank,
            world,
            _rule(args.rule, args.lr, args.tau, args.transfer_lr),
            nn.functional.cross_entropy,
            args.mode,
            args.microbatches,
            examples[rank],
            device,
        )
        for step in range(args.steps):
            x = torch.randn(n, args.widths[0])  # (N * micro_batch, features)
            y = (x @ teacher).argmax(dim=1)  # (N * micro_batch,)
            losses = engine.step(x.to(device), y.to(device))
            if losses:
                print(f"step {step}: mean loss {sum(losses) / len(losses):.4f}", flush=True)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
