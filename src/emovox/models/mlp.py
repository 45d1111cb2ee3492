"""A multi-layer perceptron over utterance-level vectors (e.g. eGeMAPS + GE2E, see :mod:`emovox.utterance`)."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """``(B, n_features, T)`` -> mean over frames (T is 1 for utterance vectors) -> input
    dropout -> dense ReLU layers with dropout -> classes."""

    def __init__(self, n_features: int, n_frames: int, n_classes: int, *, hidden: tuple[int, ...] = (256,),
                 dropout: float = 0.5, input_dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(input_dropout)]
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.mean(dim=2))
