"""Pipeline-parallel training on analog in-memory accelerators, simulated in one process.

Schedules without pipelining, with a synchronous (flushed) and with an asynchronous (1F1B,
no flush, no weight stashing) pipeline; their clock cycles and staleness; a cost-balanced
split of an ``nn.Sequential`` into stages; and an exact executor that trains the stages with
digital SGD, Analog SGD or Tiki-Taka at the response-function level; the same training with
one stage per process on ``torch.distributed.pipelining`` (:mod:`~.distributed`).

References:
    Wu et al. 2024/2026, arXiv 2410.15155 (pipeline training on AIMC); ``docs/pipeline.md``.
"""

from analoglib.pipeline.distributed import (
    ENGINE_MODES,
    DistributedPipeline,
    StageUpdater,
    UpdatingStage,
    init_process_group_from_env,
    pipelining_available,
    stage_examples,
)
from analoglib.pipeline.executor import (
    AnalogSGD,
    DigitalSGD,
    PipelineExecutor,
    PipelineResult,
    TikiTaka,
    UpdateRule,
    apply_update,
)
from analoglib.pipeline.schedule import (
    MODES,
    OPS,
    Action,
    CycleCost,
    Event,
    Schedule,
    build_schedule,
    closed_form_cycles,
    cycles_per_sample,
    makespan,
    stage_actions,
    timeline,
    validate_schedule,
)
from analoglib.pipeline.stages import TILE_SIZE, partition, stage_costs, tile_count

__all__ = [
    "ENGINE_MODES",
    "MODES",
    "OPS",
    "TILE_SIZE",
    "Action",
    "AnalogSGD",
    "CycleCost",
    "DigitalSGD",
    "DistributedPipeline",
    "Event",
    "PipelineExecutor",
    "PipelineResult",
    "Schedule",
    "StageUpdater",
    "TikiTaka",
    "UpdateRule",
    "UpdatingStage",
    "apply_update",
    "build_schedule",
    "closed_form_cycles",
    "cycles_per_sample",
    "init_process_group_from_env",
    "makespan",
    "partition",
    "pipelining_available",
    "stage_examples",
    "stage_actions",
    "stage_costs",
    "tile_count",
    "timeline",
    "validate_schedule",
]
