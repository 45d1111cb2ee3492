"""Head over stacked encoder hidden states: softmax-weighted layer sum, attentive statistics pooling."""

from __future__ import annotations

import torch
from torch import nn


class SSLHead(nn.Module):
    """``(B, layers * hidden, T)`` -> learnable layer weights -> frame projection ->
    attentive mean + standard deviation over time -> classes."""

    def __init__(self, n_features: int, n_frames: int, n_classes: int, *, n_layers: int, hidden: int = 128,
                 dropout: float = 0.2):
        super().__init__()
        if n_features % n_layers:
            raise ValueError(f"{n_features} features do not split into {n_layers} layers")
        self.n_layers = n_layers
        self.layer_logits = nn.Parameter(torch.zeros(n_layers))
        self.proj = nn.Sequential(nn.Conv1d(n_features // n_layers, hidden, 1), nn.ReLU())
        self.attention = nn.Sequential(nn.Conv1d(hidden, hidden // 2, 1), nn.Tanh(), nn.Conv1d(hidden // 2, 1, 1))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, n_classes))

    def layer_weights(self) -> torch.Tensor:
        return torch.softmax(self.layer_logits, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, f, t = x.shape
        x = x.reshape(b, self.n_layers, f // self.n_layers, t)
        x = (x * self.layer_weights()[None, :, None, None]).sum(dim=1)  # (B, D, T)
        h = self.proj(x)
        w = torch.softmax(self.attention(h), dim=2)
        mean = (w * h).sum(dim=2)
        std = ((w * (h - mean[:, :, None]) ** 2).sum(dim=2) + 1e-6).sqrt()
        return self.head(torch.cat([mean, std], dim=1))
