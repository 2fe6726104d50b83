"""The torch.distributed.pipelining engine reproduces the single-process executor.

Two gloo processes, one stage each (``docs/pipeline.md#distributed-engine``). One spawn runs
every scenario in turn; each rank saves its stage's weights, update count and staleness, and
the test compares them with :class:`~analoglib.pipeline.PipelineExecutor` on the same model,
data and chunking (one executor run per engine step: ``Schedule1F1B`` drains at the end of
every step).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import free_port, gloo_group
from torch import Tensor, nn

from analoglib.pipeline import (
    AnalogSGD,
    DigitalSGD,
    PipelineExecutor,
    TikiTaka,
    UpdateRule,
    build_schedule,
    partition,
    pipelining_available,
    stage_examples,
)

pytestmark = pytest.mark.skipif(
    not pipelining_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo and torch.distributed.pipelining are needed",
)

STAGES = 2
MICRO = 4  # samples per micro-batch
WIDTHS = [6, 10, 10, 3]

# name -> (mode, rule, micro-batches per engine step, steps, infer_shapes)
SCENARIOS: dict[str, tuple[str, UpdateRule, int, int, bool]] = {
    "async_analog": ("async", AnalogSGD(0.2, 0.6), 6, 2, False),
    "async_tiki_taka": ("async", TikiTaka(0.2, 0.3, 0.6), 6, 1, False),
    "sync_digital": ("sync", DigitalSGD(0.2), 3, 3, False),
    "sync_analog": ("sync", AnalogSGD(0.2, 0.6), 3, 2, False),
    "async_inferred_shapes": ("async", AnalogSGD(0.2, 0.6), 6, 2, True),
}


def _model() -> nn.Sequential:
    """Tanh MLP; the first stage holds Linear-Tanh-Linear-Tanh (element-wise functions)."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for a, b in zip(WIDTHS, WIDTHS[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1])


def _data(n: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n * MICRO, WIDTHS[0], generator=gen)  # (n * micro, features)
    y = torch.randint(0, WIDTHS[-1], (n * MICRO,), generator=gen)
    return x, y


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from analoglib.pipeline import DistributedPipeline

    with gloo_group(rank, world, port):
        for name, (mode, rule, per_step, steps, infer) in SCENARIOS.items():
            stages = partition(_model(), world)
            examples = stage_examples(stages, torch.zeros(MICRO, WIDTHS[0]))
            engine = DistributedPipeline(
                stages[rank],
                rank,
                world,
                rule,
                nn.functional.cross_entropy,
                mode,
                per_step,
                examples[rank],
                torch.device("cpu"),
                infer_shapes=infer,
            )
            x, y = _data(per_step * steps)
            losses: list[float] = []
            for k in range(steps):
                rows = slice(k * per_step * MICRO, (k + 1) * per_step * MICRO)
                losses += engine.step(x[rows], y[rows])
            torch.save(
                {
                    "state": {k: v.clone() for k, v in stages[rank].state_dict().items()},
                    "updates": engine.updater.version,
                    "backwards": engine.updater.backwards,
                    "staleness": engine.updater.staleness,
                    "losses": losses,
                },
                Path(out) / f"{name}_rank{rank}.pt",
            )
            dist.barrier()


@pytest.fixture(scope="module")
def engine_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("pipeline_engine")
    mp.spawn(_worker, args=(STAGES, free_port(), str(out)), nprocs=STAGES, join=True)
    return out


def _executor(name: str) -> tuple[list[nn.Sequential], PipelineExecutor, list[float], dict]:
    mode, rule, per_step, steps, _ = SCENARIOS[name]
    stages = partition(_model(), STAGES)
    executor = PipelineExecutor(stages, rule, nn.functional.cross_entropy)
    x, y = _data(per_step * steps)
    losses: list[float] = []
    staleness: dict[tuple[int, int], int] = {}
    for k in range(steps):
        batches = [
            (x[j * MICRO : (j + 1) * MICRO].clone(), y[j * MICRO : (j + 1) * MICRO].clone())
            for j in range(k * per_step, (k + 1) * per_step)
        ]
        # one executor run per engine step; sync: one mini-batch of B = per_step micro-batches
        schedule = build_schedule(mode, STAGES, per_step, per_step, order="1f1b")
        result = executor.run(schedule, batches)
        losses += [h["loss"] for h in result.history]
        staleness.update({(s, k * per_step + j): v for (s, j), v in result.staleness.items()})
    return stages, executor, losses, staleness


def _load(out: Path, name: str, rank: int) -> dict:
    return torch.load(out / f"{name}_rank{rank}.pt", weights_only=False)


@pytest.mark.parametrize("name", ["async_analog", "async_tiki_taka", "sync_digital", "sync_analog"])
def test_engine_reproduces_the_executor(engine_runs: Path, name: str) -> None:
    mode, _, per_step, steps, _ = SCENARIOS[name]
    stages, executor, losses, staleness = _executor(name)
    start = partition(_model(), STAGES)
    for rank in range(STAGES):
        run = _load(engine_runs, name, rank)
        for key, value in stages[rank].state_dict().items():
            torch.testing.assert_close(run["state"][key], value, rtol=1e-5, atol=1e-6, msg=key)
            # not vacuous: training moved every parameter
            assert not torch.allclose(value, start[rank].state_dict()[key]), key
        assert run["updates"] == executor.versions[rank]
        expected = [staleness[rank, j] for j in range(per_step * steps)]
        assert run["staleness"] == expected
    assert torch.allclose(
        torch.tensor(_load(engine_runs, name, STAGES - 1)["losses"]),
        torch.tensor(losses),
        rtol=1e-5,
        atol=1e-6,
    )
    if mode == "async":  # stage 0 sees M - 1 = 1 update between F and B after the fill
        assert max(_load(engine_runs, name, 0)["staleness"]) == STAGES - 1
    else:
        assert set(_load(engine_runs, name, 0)["staleness"]) == {0}


def test_inferred_shapes_apply_a_spurious_update(engine_runs: Path) -> None:
    """Negative control: shapes left to inference give one spurious update.

    The first step's shape-inference pass runs one extra backward, hence one update, on the
    stage after the first.
    """
    reference = _load(engine_runs, "async_analog", 1)
    inferred = _load(engine_runs, "async_inferred_shapes", 1)
    _, _, per_step, steps, _ = SCENARIOS["async_inferred_shapes"]
    assert reference["backwards"] == per_step * steps
    assert inferred["backwards"] == per_step * steps + 1
    assert inferred["updates"] == reference["updates"] + 1
    differs = [
        key
        for key, value in reference["state"].items()
        if not torch.equal(value, inferred["state"][key])
    ]
    assert differs
