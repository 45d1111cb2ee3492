"""A self-supervised encoder fine-tuned end to end on waveforms, with the ssl head on top."""

from __future__ import annotations

import torch
from torch import nn

from emovox.models.ssl_head import SSLHead


class SSLFinetune(nn.Module):
    """Waveform ``(B, 1, samples)`` -> encoder (top ``unfreeze`` layers trainable) -> all hidden
    states -> :class:`SSLHead`.

    ``encoder_config`` (a transformers config dict) rebuilds the encoder without its
    weights, so a checkpoint loads anywhere; ``backbone`` (a local directory) initialises
    it from pretrained weights for training.
    """

    def __init__(self, n_features: int, n_frames: int, n_classes: int, *, encoder_config: dict | None = None,
                 backbone: str | None = None, unfreeze: int = 2, hidden: int = 128, dropout: float = 0.2):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        if backbone is not None:
            from emovox import ssl

            pretrained = ssl.load_encoder(backbone)
            encoder_config = pretrained.config.to_dict()
        config = AutoConfig.for_model(**{**encoder_config, "layerdrop": 0.0})  # the head needs every layer
        self.encoder = AutoModel.from_config(config)
        if backbone is not None:
            self.encoder.load_state_dict(pretrained.state_dict())
        self.encoder_config = config.to_dict()
        self.unfreeze = unfreeze
        for p in self.encoder.parameters():
            p.requires_grad = False
        for layer in self.encoder.encoder.layers[len(self.encoder.encoder.layers) - unfreeze:]:
            for p in layer.parameters():
                p.requires_grad = True
        layers = config.num_hidden_layers + 1
        frames = int(self.encoder._get_feat_extract_output_lengths(torch.tensor(n_frames)))
        self.head = SSLHead(layers * config.hidden_size, frames, n_classes, n_layers=layers, hidden=hidden,
                            dropout=dropout)

    def spec_kwargs(self) -> dict:
        """Constructor arguments that rebuild this model without the pretrained directory."""
        return {"encoder_config": self.encoder_config, "unfreeze": self.unfreeze}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = self.encoder(x[:, 0], output_hidden_states=True).hidden_states  # each (B, T', D)
        return self.head(torch.cat([s.transpose(1, 2) for s in states], dim=1))
