"""A tiny synthetic classification workload for tests of the workload and HWA machinery."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from analoglib.workloads import base


def synthetic_workload(
    name: str, parameters: dict[str, Any], n_samples: int, n_features: int, shuffle: bool
) -> base.Workload:
    """A classifier on a fixed linearly separable problem (label: sign of the feature sum).

    ``parameters`` needs ``seed``, ``hidden`` and ``epochs``; batches of 16, shuffled with a
    seeded generator when ``shuffle``.
    """
    generator = torch.Generator().manual_seed(parameters["seed"])
    x = torch.randn(n_samples, n_features, generator=generator)
    y = (x[:, : max(1, n_features // 3)].sum(dim=1) > 0).long()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y),
        batch_size=16,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(parameters["seed"]) if shuffle else None,
    )
    hidden = parameters["hidden"]
    model = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def batch_loss(model: nn.Module, batch: Any) -> tuple[Tensor, int]:
        return nn.functional.cross_entropy(model(batch[0]), batch[1]), len(batch[1])

    def evaluate(model: nn.Module) -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            accuracy = float((model(x).argmax(1) == y).float().mean())
        return {"accuracy": accuracy, "error": 1 - accuracy}

    return base.Workload(
        name=name,
        parameters=parameters,
        model=model,
        train_loader=loader,
        eval_loader=loader,
        batch_loss=batch_loss,
        evaluate=evaluate,
        metric="accuracy",
        higher_is_better=True,
        chance_error=0.5,
        recipe=base.TrainRecipe(epochs=parameters["epochs"], lr=0.05),
        description="synthetic test fixture",
        split_sizes={"train": n_samples},
    )
