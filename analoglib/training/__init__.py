"""Training mechanics for digital and analog models.

:func:`fit`, :func:`accuracy` and :func:`classification_eval_fn` are generic loops that accept
digital and converted (analog) models alike; :class:`TrainRecipe` holds their arguments.
Hardware-aware training adds weight-noise injection (the layers' modifier), clipping,
remapping, the noise ramp and distillation (:mod:`analoglib.training.hwa`). Cached training of
a workload is :func:`analoglib.workloads.train_fp` and :func:`analoglib.workloads.train_hwa`;
the HWA study of notebook 02 is :mod:`analoglib.studies.hwa_retraining`. In-memory training
(weights as pulsed devices) uses :class:`AnalogSGD` with the layers of
:mod:`analoglib.nn.trainable`.

References:
    Rasch et al. 2023; ``docs/model.md#hwa-noise``, ``docs/model.md#hwa-training`` (hardware-aware
    training).
"""

from analoglib._deprecation import moved_names
from analoglib.training import hwa
from analoglib.training.analog_sgd import AnalogSGD
from analoglib.training.hwa import (
    HWARecipe,
    ModifierRamp,
    clip_weights,
    distillation_batch_loss,
    post_update_step,
    remap_weights,
    set_modifier_strength,
)
from analoglib.training.loops import (
    OPTIMIZERS,
    SCHEDULES,
    LRSchedule,
    TrainRecipe,
    accuracy,
    classification_eval_fn,
    fit,
    make_optimizer,
)
from analoglib.training.weight_space import weight_space_updates

__all__ = [
    "OPTIMIZERS",
    "AnalogSGD",
    "HWARecipe",
    "LRSchedule",
    "ModifierRamp",
    "SCHEDULES",
    "TrainRecipe",
    "accuracy",
    "classification_eval_fn",
    "clip_weights",
    "distillation_batch_loss",
    "fit",
    "hwa",
    "make_optimizer",
    "post_update_step",
    "remap_weights",
    "set_modifier_strength",
    "weight_space_updates",
]

__getattr__ = moved_names(__name__, hwa.MOVED_NAMES)
