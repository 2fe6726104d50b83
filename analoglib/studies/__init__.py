"""The code of the numbered notebooks: one module (or package) per study, named by its slug.

Each study notebook imports exactly one of these as ``study``; the library below this layer
(physics, layers, optimisers, training, workloads) knows nothing of any study.

- ``01_nonideality_sensitivity.ipynb``: :mod:`~.nonideality_sensitivity` (Rasch et al. 2023)
- ``02_hwa_retraining.ipynb``: :mod:`~.hwa_retraining` (Rasch et al. 2023)
- ``03_glue_post_training.ipynb``: :mod:`~.glue_post_training` (Lammie et al. 2024)
- ``04_analog_training.ipynb``: :mod:`~.analog_training` (Le Gallo et al. 2023; Rasch et al. 2024)
- ``05_pipeline_training.ipynb``: :mod:`~.pipeline_training` (Wu et al. 2024/2026)
- ``06_analognas.ipynb``: :mod:`~.analognas` (Benmeziane et al. 2023)
- ``99_explorer.ipynb``: :mod:`~.explorer` (interactive nonideality explorer, Rasch et al. 2023)

Notebook ``00_quickstart.ipynb`` uses the core verbs only. The study modules are imported on
first use (``from analoglib.studies import hwa_retraining as study``), not by
``import analoglib``.
"""

#: Notebook stem -> study module name (under ``analoglib.studies``).
NOTEBOOK_STUDIES: dict[str, str] = {
    "01_nonideality_sensitivity": "nonideality_sensitivity",
    "02_hwa_retraining": "hwa_retraining",
    "03_glue_post_training": "glue_post_training",
    "04_analog_training": "analog_training",
    "05_pipeline_training": "pipeline_training",
    "06_analognas": "analognas",
    "99_explorer": "explorer",
}

__all__ = ["NOTEBOOK_STUDIES"]
