"""Convolutional models over a fixed-size feature image ``(B, n_features, n_frames)``."""

from __future__ import annotations

import torch
from torch import nn

from emovox.models.layers import conv_block


class SmallCNN(nn.Module):
    """The classic baseline: Conv2D 32 -> max-pool -> flatten -> dense 64 -> classes."""

    def __init__(self, n_features: int, n_frames: int, n_classes: int, *, dropout: float = 0.3):
        super().__init__()
        flat = 32 * (n_features // 2) * (n_frames // 2)
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(flat, 64),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(64, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.unsqueeze(1))


class CNN(nn.Module):
    """Conv blocks with batch-norm, then mean+max pooling over time, dropout, linear."""

    def __init__(self, n_features: int, n_frames: int, n_classes: int, *,
                 channels: tuple[int, ...] = (16, 32, 64, 128), dropout: float = 0.3):
        super().__init__()
        blocks, c_in = [], 1
        for c in channels:
            blocks.append(conv_block(c_in, c))
            c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * c_in, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(x.unsqueeze(1)).mean(dim=2)  # (B, C, T')
        return self.head(torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1))
