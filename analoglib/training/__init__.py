"""Training of digital and analog models.

:func:`fit`, :func:`accuracy` and :func:`classification_eval_fn` are generic loops that accept
digital and converted (analog) models alike. Hardware-aware training (weight-noise injection,
clipping, remapping, ramp, distillation and the cached HWA training driver) lives in
``analoglib/training/hwa.py``.

References:
    Rasch et al. 2023; ``aimc-model.md`` sections 9 and 10 (hardware-aware training).
"""

from analoglib.training import hwa
from analoglib.training.hwa import (
    HWA_PROFILES,
    PUBLISHED_RASCH_2023,
    HWARecipe,
    ModifierRamp,
    clip_weights,
    compare_with_published,
    distillation_batch_loss,
    evaluate_variants,
    hwa_cache_path,
    hwa_recipe,
    normalized_accuracy_table,
    post_update_step,
    remap_weights,
    set_modifier_strength,
    summary_metrics,
    train_hwa,
)
from analoglib.training.loops import (
    OPTIMIZERS,
    accuracy,
    classification_eval_fn,
    fit,
    make_optimizer,
)

__all__ = [
    "HWA_PROFILES",
    "OPTIMIZERS",
    "PUBLISHED_RASCH_2023",
    "HWARecipe",
    "ModifierRamp",
    "accuracy",
    "classification_eval_fn",
    "clip_weights",
    "compare_with_published",
    "distillation_batch_loss",
    "evaluate_variants",
    "fit",
    "hwa",
    "hwa_cache_path",
    "hwa_recipe",
    "make_optimizer",
    "normalized_accuracy_table",
    "post_update_step",
    "remap_weights",
    "set_modifier_strength",
    "summary_metrics",
    "train_hwa",
]
