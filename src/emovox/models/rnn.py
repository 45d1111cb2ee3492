"""Recurrent models over feature frames: BiLSTM and CRNN, both with attention pooling."""

from __future__ import annotations

import torch
from torch import nn

from emovox.models.layers import AttentionPool, conv_block


class BiLSTM(nn.Module):
    """Frames -> linear projection -> BiLSTM -> attention pooling -> classes."""

    def __init__(self, n_features: int, n_frames: int, n_classes: int, *, hidden: int = 128,
                 layers: int = 2, dropout: float = 0.3):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(n_features, hidden), nn.LayerNorm(hidden), nn.ReLU())
        self.rnn = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                           dropout=dropout if layers > 1 else 0.0)
        self.pool = AttentionPool(2 * hidden)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.proj(x.transpose(1, 2)))
        return self.head(self.pool(h))


class CRNN(nn.Module):
    """Conv blocks (pooling frequency more than time) -> BiGRU -> attention pooling."""

    def __init__(self, n_features: int, n_frames: int, n_classes: int, *,
                 channels: tuple[int, ...] = (16, 32, 64), hidden: int = 128, dropout: float = 0.3):
        super().__init__()
        blocks, c_in, f = [], 1, n_features
        for i, c in enumerate(channels):
            pool = (2, 2) if i < 2 else (2, 1)
            blocks.append(conv_block(c_in, c, pool))
            c_in, f = c, f // 2
        self.blocks = nn.Sequential(*blocks)
        self.rnn = nn.GRU(c_in * f, hidden, batch_first=True, bidirectional=True)
        self.pool = AttentionPool(2 * hidden)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(x.unsqueeze(1))  # (B, C, F', T')
        h = h.flatten(1, 2).transpose(1, 2)  # (B, T', C*F')
        h, _ = self.rnn(h)
        return self.head(self.pool(h))
