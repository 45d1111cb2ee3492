"""Building blocks shared by the model families."""

from __future__ import annotations

import torch
from torch import nn


class FeatureNorm(nn.Module):
    """Standardise each feature row with statistics learned from the training set.

    The statistics live in buffers, so they travel with the weights (and into ONNX).
    """

    def __init__(self, n_features: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features, 1))
        self.register_buffer("std", torch.ones(n_features, 1))

    def fit(self, feats: list) -> None:
        """Set mean and std per row from a list of ``(n_features, n_frames)`` arrays.

        A row that is constant in training keeps std 1 (as scikit-learn's StandardScaler
        does), so values it takes only in new data are not blown up by a tiny std.
        """
        x = torch.cat([torch.as_tensor(f) for f in feats], dim=1).double()
        std = x.std(dim=1, keepdim=True)
        self.mean.copy_(x.mean(dim=1, keepdim=True).float())
        self.std.copy_(torch.where(std < 1e-5, 1.0, std).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class AttentionPool(nn.Module):
    """Attention pooling over time: ``(B, T, D) -> (B, D)``."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.score(x), dim=1)
        return (weights * x).sum(dim=1)


def conv_block(c_in: int, c_out: int, pool: tuple[int, int] = (2, 2)) -> nn.Sequential:
    """Conv 3x3 -> batch-norm -> ReLU -> max-pool."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(pool),
    )
