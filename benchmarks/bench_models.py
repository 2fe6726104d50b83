"""Whole study models: analog cost as a ratio to the same digital model, same shapes, same run.

Forward: the model converted with ``standard_hwa_2023`` (programmed and drifted to 1 h, no
gradient) against the digital model in ``eval()`` mode. Training step: forward, backward,
optimiser step, and for the analog model clipping and remapping (``post_update_step``) with the
family's HWA training config (``analoglib.studies.hwa_retraining.hwa_recipe``), against a plain
training step of the digital model. Target: <= 3x for both.

Models (the studies' own): ResNet-20 on Fashion-MNIST-shaped input (batch 256), ResNet-32 on
CIFAR-10-shaped input (batch 128), the 2 x 200 LSTM language model (vocabulary 10,000,
T = 35, batch 64), a MiniLM-sized BERT (6 layers, width 384, FFN 1536, batch 32, length 128;
needs ``transformers``); and, for grouped convolutions, a depthwise-separable CNN (four
MobileNet blocks on 28 x 28 input, batch 256).

Run: ``python benchmarks/bench_models.py [--threads N] [--repeats R] [--device cpu]
[--fused]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from timing import paired_times, setup
from torch import nn
from torch.nn import functional as F

import analoglib as al
from analoglib.models.lstm_lm import LSTMLanguageModel
from analoglib.models.resnet import resnet20, resnet32
from analoglib.nn.base import CLIP_CHECK_BATCHES, InputClippingWarning
from analoglib.studies import hwa_retraining

Batch = tuple[torch.Tensor, torch.Tensor]


def _bert(
    device: torch.device,
) -> tuple[nn.Module, Batch, Callable[[nn.Module, Batch], torch.Tensor]]:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        num_labels=2,
    )
    model = BertForSequenceClassification(config).to(device)
    tokens = torch.randint(0, config.vocab_size, (32, 128), device=device)
    labels = torch.randint(0, 2, (32,), device=device)

    def loss(module: nn.Module, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(module(input_ids=batch[0]).logits, batch[1])

    return model, (tokens, labels), loss


def _models(device: torch.device) -> list[tuple[str, str, Callable[[], tuple]]]:
    def classify(module: nn.Module, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(module(batch[0]), batch[1])

    def language(module: nn.Module, batch: Batch) -> torch.Tensor:
        logits = module(batch[0])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[1].reshape(-1))

    def resnet20_fmnist() -> tuple:
        x = torch.randn(256, 1, 28, 28, device=device)
        y = torch.randint(0, 10, (256,), device=device)
        return resnet20(in_channels=1).to(device), (x, y), classify

    def resnet32_cifar() -> tuple:
        x = torch.randn(128, 3, 32, 32, device=device)
        y = torch.randint(0, 10, (128,), device=device)
        return resnet32().to(device), (x, y), classify

    def depthwise_cnn() -> tuple:
        # Depthwise-separable blocks (depthwise 3x3, pointwise 1x1) as in MobileNet: every
        # depthwise group is a 9-row matrix on its own tile.
        def block(channels: int, out: int, stride: int) -> list[nn.Module]:
            return [
                nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
                nn.Conv2d(channels, out, 1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(),
            ]

        model = nn.Sequential(
            nn.Conv2d(1, 32, 3, 1, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            *block(32, 64, 1),
            *block(64, 128, 2),
            *block(128, 128, 1),
            *block(128, 256, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(256, 10),
        )
        x = torch.randn(256, 1, 28, 28, device=device)
        y = torch.randint(0, 10, (256,), device=device)
        return model.to(device), (x, y), classify

    def lstm_ptb() -> tuple:
        tokens = torch.randint(0, 10000, (64, 36), device=device)
        return LSTMLanguageModel(10000).to(device), (tokens[:, :-1], tokens[:, 1:]), language

    return [
        ("ResNet-20, 1x28x28, batch 256", "cnn", resnet20_fmnist),
        ("ResNet-32, 3x32x32, batch 128", "cnn", resnet32_cifar),
        ("Depthwise-separable CNN, batch 256", "cnn", depthwise_cnn),
        ("LSTM 2x200, T 35, batch 64", "rnn", lstm_ptb),
        ("BERT 6x384, L 128, batch 32", "transformer", lambda: _bert(device)),
    ]


def main() -> None:
    args, device, sync = setup(__doc__.splitlines()[0], repeats=5)
    # The models are random, their input ranges uncalibrated: the clipping does not matter here.
    warnings.simplefilter("ignore", InputClippingWarning)
    header = ("model", "pass", "digital ms", "analog ms", "ratio", "target")
    print("{:>32} {:>9} {:>11} {:>10} {:>6} {:>6}".format(*header))
    torch.manual_seed(0)
    for label, family, build in _models(device):
        try:
            digital, batch, loss_fn = build()
        except ImportError as error:
            print(f"{label:>32}  skipped: {error}")
            continue
        bench_one(label, family, digital, batch, loss_fn, args.repeats, sync)


def bench_one(
    label: str,
    family: str,
    digital: nn.Module,
    batch: Batch,
    loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
    repeats: int,
    sync: Callable[[], None],
) -> None:
    """Print the forward and training-step rows of one model."""
    # Forward, no gradient, programmed and drifted to 1 h.
    digital.eval()
    # Embeddings and norms stay digital by design (docs/model.md#recipe-resnet-lstm).
    analog = al.convert_to_analog(
        digital, al.presets.standard_hwa_2023(), on_unsupported="ignore"
    ).eval()
    al.program(analog, seed=0)
    al.drift(analog, 3600.0, seed=1)

    def forward(module: nn.Module) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                loss_fn(module, batch)
            sync()

        return run

    # The first evaluation batches of a directly converted model check the input clipping on
    # the unfolded patches; time the steady state after them.
    for _ in range(CLIP_CHECK_BATCHES):
        forward(analog)()
    t_digital, t_analog = paired_times(forward(digital), forward(analog), repeats)
    print(
        f"{label:>32} {'forward':>9} {t_digital * 1e3:11.1f} {t_analog * 1e3:10.1f} "
        f"{t_analog / t_digital:6.2f} {3.0:6.1f}"
    )

    # One training step: forward, backward, optimiser (and clip + remap for HWA).
    _, config, _ = hwa_retraining.hwa_recipe(family, "default")
    trained = al.convert_to_analog(digital, config, on_unsupported="ignore").train()
    digital.train()
    optimizers = {
        id(m): torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-5)
        for m in (digital, trained)
    }

    def step(module: nn.Module, hwa: bool) -> Callable[[], None]:
        optimizer = optimizers[id(module)]

        def run() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(module, batch).backward()
            optimizer.step()
            if hwa:
                al.training.post_update_step(module)
            sync()

        return run

    t_digital, t_analog = paired_times(
        step(digital, False), step(trained, True), max(2, repeats // 2)
    )
    print(
        f"{label:>32} {'train':>9} {t_digital * 1e3:11.1f} {t_analog * 1e3:10.1f} "
        f"{t_analog / t_digital:6.2f} {3.0:6.1f}"
    )


if __name__ == "__main__":
    main()
