"""A kernel machine over utterance vectors: RBF similarities to landmark utterances.

Each *view* (a slice of the input vector, e.g. the eGeMAPS functionals with the GE2E
embedding) is compared with ``landmarks`` training utterances through a Gaussian (RBF)
kernel and whitened with the Nyström map, so a linear layer over the result behaves like
a kernel SVM (Williams & Seeger, 2001). The views' features are concatenated before the
linear layer: one classifier over a sum of kernels. Landmarks are drawn from the
(normalised) training vectors by :meth:`KernelMachine.init_from_data` and travel in
buffers with the weights.

In leave-one-corpus-out tests this transferred to unheard corpora better than an MLP over
the same vectors (docs/benchmarks.md).
"""

from __future__ import annotations

import torch
from torch import nn

EIG_FLOOR = 1e-6  # Nyström components below this share of the largest eigenvalue are dropped


class KernelMachine(nn.Module):
    """``(B, n_features, T)`` -> mean over frames -> per view ``exp(-gamma |x - l|^2)`` to each
    landmark ``l``, Nyström-whitened -> concatenated -> linear -> logits.

    Parameters
    ----------
    views : list of [start, stop]
        Input slices, each with its own kernel (default: the whole vector). ``gamma`` is
        ``1 / (stop - start)``, scikit-learn's ``"scale"`` for standardised inputs.
    landmarks : int
        Training utterances each view is compared with.
    clip : float, optional
        Standardised inputs (and landmarks) are clipped to ``[-clip, clip]`` first, so one
        value far outside the training range (a descriptor a telephone line or noise throws
        off) cannot drive a whole view's kernel to zero (default: no clipping).
    """

    def __init__(self, n_features: int, n_frames: int, n_classes: int, *, views: list | None = None,
                 landmarks: int = 500, clip: float | None = None):
        super().__init__()
        self.clip = clip
        self.views = [tuple(int(v) for v in view) for view in (views or [[0, n_features]])]
        if any(not 0 <= a < b <= n_features for a, b in self.views):
            raise ValueError(f"views {self.views} must be slices of the {n_features} input features")
        for i, (a, b) in enumerate(self.views):
            self.register_buffer(f"landmarks_{i}", torch.zeros(landmarks, b - a))
            self.register_buffer(f"whiten_{i}", torch.zeros(landmarks, landmarks))
        self.head = nn.Linear(landmarks * len(self.views), n_classes)
        self._fold: tuple[tuple, list[torch.Tensor]] = ((), [])  # (weights' versions, per-view products)

    def _kernel(self, x: torch.Tensor, i: int) -> torch.Tensor:
        a, b = self.views[i]
        landmarks = getattr(self, f"landmarks_{i}")
        x = self._clipped(x[:, a:b])
        sq = x.square().sum(1, keepdim=True) + landmarks.square().sum(1) - 2 * x @ landmarks.T  # |x - l|^2
        return torch.exp(-sq.clamp_min(0) / (b - a))

    def _clipped(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.clip is None else x.clamp(-self.clip, self.clip)

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, *, seed: int = 0) -> None:
        """Draw the landmarks from normalised training vectors ``x`` ``(N, n_features, T)``
        (with replacement when there are fewer than ``landmarks``) and fit the whitening."""
        x = x.mean(dim=2).float()
        n = self.landmarks_0.shape[0]
        gen = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(x), generator=gen)[:n] if len(x) >= n else torch.randint(len(x), (n,), generator=gen)
        for i, (a, b) in enumerate(self.views):
            getattr(self, f"landmarks_{i}").copy_(self._clipped(x[pick, a:b]))
            vals, vecs = torch.linalg.eigh(self._kernel(x[pick], i).double())
            keep = vals > EIG_FLOOR * vals.max()
            inv_sqrt = torch.where(keep, vals.clamp_min(EIG_FLOOR).rsqrt(), torch.zeros_like(vals))
            getattr(self, f"whiten_{i}").copy_((vecs * inv_sqrt) @ vecs.T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean(dim=2)
        if torch.is_grad_enabled():  # fitting: the whitened features, as trained
            feats = [self._kernel(x, i) @ getattr(self, f"whiten_{i}") for i in range(len(self.views))]
            return self.head(torch.cat(feats, dim=1))
        return sum(self._kernel(x, i) @ fold for i, fold in enumerate(self._folded())) + self.head.bias

    def _folded(self) -> list[torch.Tensor]:
        """Each view's whitening times its share of the linear layer, ``(landmarks, n_classes)``:
        the same logits from one small product per view instead of a ``landmarks``-square one
        (0.9 -> 0.5 ms for one clip of the bundled model, one thread). Kept until the weights
        change; made afresh inside an ONNX export, where it becomes a constant of the graph."""
        whiten = [getattr(self, f"whiten_{i}") for i in range(len(self.views))]
        key = (self.head.weight.device, self.head.weight._version, *(w._version for w in whiten))
        if torch.onnx.is_in_onnx_export() or self._fold[0] != key:
            n = whiten[0].shape[0]
            self._fold = (key, [w @ self.head.weight[:, i * n : (i + 1) * n].T for i, w in enumerate(whiten)])
        return self._fold[1]
