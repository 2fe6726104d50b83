"""Training of digital and analog models.

:func:`fit`, :func:`accuracy` and :func:`classification_eval_fn` are generic loops that accept
digital and converted (analog) models alike. Hardware-aware training (weight-noise injection,
clipping, remapping) will live in ``analoglib/training/hwa.py``.

References:
    Rasch et al. 2023; ``aimc-model.md`` sections 9 and 10 (hardware-aware training).
"""

from analoglib.training.loops import OPTIMIZERS, accuracy, classification_eval_fn, fit

__all__ = ["OPTIMIZERS", "accuracy", "classification_eval_fn", "fit"]
