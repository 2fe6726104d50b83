"""Plain-PyTorch models used by the notebooks (converted to analog with ``convert_to_analog``).

Notebooks never define models themselves (``docs/development.md#layout``).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["DigitsCNN"]


class DigitsCNN(nn.Module):
    """A small CNN for scikit-learn's 8x8 digits (about 38 k weights).

    Two 3x3 convolutions with ReLU (``1 -> channels[0] -> channels[1]``, padding 1), a 2x2
    max-pool (8x8 -> 4x4), then ``Linear(channels[1]*16, hidden)`` with ReLU and
    ``Linear(hidden, num_classes)``. With the defaults every analog matrix fits one 512-row
    tile of the standard model (the largest has 32*4*4 = 512 inputs).

    Args:
        num_classes: Number of output classes.
        channels: Output channels of the two convolutions.
        hidden: Width of the hidden fully connected layer.

    Inputs are ``(batch, 1, 8, 8)``; outputs are ``(batch, num_classes)`` logits.
    """

    def __init__(
        self, num_classes: int = 10, channels: tuple[int, int] = (16, 32), hidden: int = 64
    ) -> None:
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * 4 * 4, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits of a batch of 8x8 images.

        Args:
            x: Images ``(batch, 1, 8, 8)``.

        Returns:
            Logits ``(batch, num_classes)``.
        """
        x = self.features(x)  # (batch, c2, 4, 4)
        return self.classifier(x)  # type: ignore[no-any-return]
