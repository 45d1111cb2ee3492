"""The training loop: one model, one training set, early stopping on held-out speakers.

Read top to bottom: seed -> build -> fit normaliser -> class weights -> epochs of
(shuffle, crop, SpecAugment, step) -> validate (UA) -> keep best -> stop early.
A checkpoint with every RNG state is written atomically after each epoch (and, on a
stop request, mid-epoch with the position in the epoch), so a run resumes exactly.

The model lives on ``cfg.device`` (CUDA when there is one, by default); features stay
numpy on the CPU and go over one batch at a time. On CUDA the forward pass runs under
autocast (``cfg.precision``, bf16 by default where the GPU has it; fp16 with a loss
scaler); the CPU trains in fp32. Checkpoints hold CPU tensors, so a run interrupted on
one machine resumes on another.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emovox import distributed, frontend, models
from emovox.augment import parse_all, speaker_swaps
from emovox.device import autocast, check, describe, resolve, resolve_precision, to_cpu, to_device
from emovox.device import of as device_of
from emovox.errors import ConfigError
from emovox.features import FeatureConfig, fit_frames
from emovox.files import atomic_write
from emovox.predict import score_features
from emovox.progress import bar

log = logging.getLogger("emovox.train")
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (saved with the model).

    Attributes
    ----------
    model : str
        Model family (see :data:`emovox.models.MODELS`).
    model_kwargs : dict
        Extra constructor arguments of the family.
    epochs, batch_size, lr, weight_decay : training schedule (Adam).
    schedule : {"cosine", "constant"}
        Learning rate decays to zero over ``epochs`` along a cosine, or stays constant.
    patience : int
        Epochs without a better validation UA before stopping.
    class_weights : bool
        Weight the loss by inverse class frequency of the training fold (and, when the
        data pools several corpora, by corpus within each class).
    spec_augment : bool
        Random time and frequency masks on training inputs.
    augment : tuple of str
        Waveform augmentations (see :mod:`emovox.augment`), e.g. ``("speed:0.9",
        "speed:1.1")``: each epoch every training utterance is drawn as its original or
        one of these copies.
    speaker_swap : int
        Copies of every training utterance moved onto another training speaker's voice in
        feature space (:func:`emovox.augment.speaker_swaps`), drawn like the waveform copies.
    val_fraction : float
        Share of training speakers held out for early stopping.
    seed : int
        Seeds Python, NumPy and torch.
    checkpoint_every : int
        Also write the checkpoint every this many steps (0: at the end of each epoch only).
    encoder_lr_scale : float
        Learning-rate factor for a fine-tuned pretrained encoder (``ssl_finetune``).
    device : str
        ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``. Under
        torch.distributed on GPUs each rank takes GPU ``LOCAL_RANK``.
    precision : {"auto", "bf16", "fp16", "fp32"}
        Autocast precision on CUDA (``auto``: bf16 where the GPU has it, else fp32; fp16
        scales the loss). The CPU computes in fp32 and refuses bf16/fp16.
    adapt_prior : float, optional
        Also train a head on features centred per speaker (divided by the training
        speakers' typical spread), and save both heads as one
        model that reads a single clip as it is and adapts when given a speaker's audio
        (:class:`emovox.models.Adaptive`). The value is how many frames (utterances, for
        utterance vectors) of a new speaker weigh as much as the training speakers'
        typical mean, toward which the new speaker's is shrunk.
    """

    model: str = "cnn"
    model_kwargs: dict = field(default_factory=dict)
    epochs: int = 60
    batch_size: int = 32
    lr: float = 1e-3
    schedule: str = "cosine"
    weight_decay: float = 1e-4
    patience: int = 20
    class_weights: bool = True
    spec_augment: bool = True
    augment: tuple[str, ...] = ()
    speaker_swap: int = 0
    val_fraction: float = 0.2
    seed: int = 0
    checkpoint_every: int = 0
    encoder_lr_scale: float = 0.1
    device: str = "auto"
    precision: str = "auto"
    adapt_prior: float | None = None

    def __post_init__(self) -> None:
        if self.model not in models.MODELS:
            raise ConfigError(f"unknown model {self.model!r}", fix=f"use one of {', '.join(models.MODELS)}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("epochs, batch_size and lr must be positive")
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"unknown schedule {self.schedule!r}", fix="use cosine or constant")
        if self.speaker_swap < 0:
            raise ConfigError(f"speaker_swap must be >= 0, not {self.speaker_swap}")
        if self.adapt_prior is not None and self.adapt_prior < 0:
            raise ConfigError(f"adapt_prior must be >= 0, not {self.adapt_prior}")
        parse_all(self.augment)  # a bad spec fails here, before any work
        object.__setattr__(self, "device", check(self.device))
        resolve_precision(self.precision, resolve(self.device))  # a missing GPU or bf16 on CPU too


def for_features(train: TrainConfig, features: FeatureConfig) -> TrainConfig:
    """``train`` with what its model must know of the features that only the encoder can
    say: the ``ssl`` head's number of stacked hidden states (read here, not by the config)."""
    if train.model != "ssl" or "n_layers" in train.model_kwargs:
        return train
    return dataclasses.replace(train, model_kwargs={"n_layers": frontend.ssl_layers(features), **train.model_kwargs})


def for_inputs(train: TrainConfig, *, speaker_normed: bool) -> TrainConfig:
    """``train`` for a model whose inputs are ``speaker_normed`` (centred per speaker): without
    speaker swaps, which would only move utterances between centres that are all zero there."""
    return dataclasses.replace(train, speaker_swap=0) if speaker_normed else train


@dataclass
class FitResult:
    """A trained model (best validation epoch) and its history."""

    model: models.Classifier
    best_epoch: int
    best_val_ua: float
    history: list[dict]


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights ``n / (k * count)`` (scikit-learn's "balanced"); absent classes get 0."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w


def sample_weights(y: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Per-utterance loss weights that balance classes, and within them corpora (``groups``).

    Every (group, class) cell gets the same total weight, so neither a frequent class nor
    a large corpus dominates. With no groups this is ``class_weights(y)[y]``.
    """
    keys = y if groups is None else np.asarray(groups, dtype=np.int64) * (int(y.max()) + 1) + y
    cell = np.unique(keys, return_inverse=True)[1]
    return class_weights(cell, int(cell.max()) + 1)[cell]


def spec_augment(x: torch.Tensor, gen: torch.Generator, *, masks: int = 2) -> torch.Tensor:
    """Mask random frequency bands (≤ F/8 rows) and time spans (≤ T/10 frames) with the batch mean.

    A one-row waveform gets time masks only, a one-frame utterance vector feature masks only.
    The masks are drawn from ``gen`` on the CPU (so a seed gives the same masks on any
    device) and applied where ``x`` lives.
    """  # noqa: RUF002
    x = x.clone()
    b, f, t = x.shape
    fill = x.mean()
    for axis, size, width in ((1, f, f // 8), (2, t, t // 10)):
        for _ in range(masks):
            w = torch.randint(0, width + 1, (b,), generator=gen)
            start = (torch.rand(b, generator=gen) * (size - w)).long()
            pos = torch.arange(size)
            mask = ((pos[None] >= start[:, None]) & (pos[None] < (start + w)[:, None])).to(x.device)
            x.masked_fill_(mask[:, :, None] if axis == 1 else mask[:, None, :], fill)
    return x


def fit(feats: list[np.ndarray], y: np.ndarray, fit_idx: np.ndarray, val_idx: np.ndarray, *,
        n_classes: int, n_frames: int, cfg: TrainConfig, groups: np.ndarray | None = None,
        augmented: Sequence[list[np.ndarray]] = (), speakers: Sequence[str] | None = None,
        checkpoint_dir: str | Path | None = None, progress: bool = True, description: str = "train") -> FitResult:
    """Train one model on ``fit_idx``, early-stopped on validation UA over ``val_idx``.

    Parameters
    ----------
    feats : list of ndarray
        Feature matrices ``(F, T)`` for the whole manifest.
    y : ndarray of int
        Class index per utterance.
    fit_idx, val_idx : ndarray of int
        Training and validation utterances (disjoint speakers).
    n_classes, n_frames : int
        Output classes and the fixed model input length in frames.
    cfg : TrainConfig
    groups : ndarray of int, optional
        Corpus index per utterance; class weights then also balance corpora.
    augmented : sequence of lists of ndarray
        Features of augmented copies of every utterance, one list per augmentation
        (aligned with ``feats``); each training draw picks the original or a copy.
    speakers : sequence of str, optional
        Speaker per utterance; needed by ``cfg.speaker_swap``, whose copies join ``augmented``.
    checkpoint_dir : path, optional
        Where ``checkpoint.pt`` is written each epoch; an existing one is resumed.

    Under ``torch.distributed`` every rank calls this with the same arguments: the model
    is wrapped in DistributedDataParallel (SyncBatchNorm on GPU; on CPU, where torch has
    no SyncBatchNorm, running statistics are averaged over ranks after each epoch), each rank trains on
    its shard of every epoch's permutation, validation counts are summed over ranks so
    all ranks take the same early-stopping decision, and only rank 0 writes checkpoints.
    On GPUs each rank trains on GPU ``LOCAL_RANK``.

    The returned model is on the training device, in eval mode.
    """
    if cfg.speaker_swap:
        if speakers is None:
            raise ConfigError("speaker_swap needs each utterance's speaker", fix="pass speakers to fit")
        augmented = [*augmented, *speaker_swaps(feats, y, speakers, fit_idx, copies=cfg.speaker_swap, seed=cfg.seed)]
    dev = distributed.device_for_rank(resolve(cfg.device))
    precision = resolve_precision(cfg.precision, dev)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = models.build(cfg.model, n_features=feats[0].shape[0], n_frames=n_frames, n_classes=n_classes,
                         **cfg.model_kwargs)
    model.norm.fit([feats[i] for i in fit_idx])
    if hasattr(model.body, "init_from_data"):  # e.g. the kernel machine's landmarks
        model.body.init_from_data(model.norm(torch.as_tensor(np.stack([fit_frames(feats[i], n_frames)
                                                                         for i in fit_idx]))), seed=cfg.seed)
    allowed = corpus_classes(y, fit_idx, groups, n_classes)
    weights = np.zeros(len(y), dtype=np.float32)
    weights[fit_idx] = sample_weights(y[fit_idx], None if groups is None else groups[fit_idx]) \
        if cfg.class_weights else 1.0
    if distributed.world() > 1 and dev.type == "cuda":  # torch's SyncBatchNorm is GPU-only; on CPU DDP
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # broadcasts BN buffers
    model.to(dev)
    net = model
    if distributed.world() > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    opt = torch.optim.Adam(_param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor(cfg))
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16")
    step_on = _Step(dev, precision, scaler)
    if distributed.is_main():
        log.info("%s on %s in %s", description, describe(dev), precision)
    state = {"epoch": 0, "best_ua": -1.0, "best_epoch": 0, "best_state": None, "history": [],
             "order": None, "step": 0, "loss_sum": 0.0, "seen": 0}  # the last four: position inside an epoch
    ckpt = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir else None
    if ckpt is not None and ckpt.exists():
        state = _resume(ckpt, model, opt, sched, scaler, rng, gen)
        log.info("resumed %s at epoch %d step %d", ckpt, state["epoch"], state["step"])

    def save() -> None:
        if ckpt is not None and distributed.is_main():
            _save_checkpoint(ckpt, model, opt, sched, scaler, rng, gen, state)

    with _stop_scope(), bar(enabled=progress and distributed.is_main(), transient=True) as pbar:
        task = pbar.add_task(description, total=cfg.epochs, completed=state["epoch"], status="")
        while state["epoch"] < cfg.epochs and state["epoch"] - state["best_epoch"] < cfg.patience:
            if state["order"] is None:
                state.update(order=rng.permutation(fit_idx), step=0, loss_sum=0.0, seen=0)
            loss = _epoch(net, model, opt, step_on, weights, (feats, *augmented), y, state, n_frames, cfg, rng,
                          gen, save, allowed)
            state["order"] = None
            distributed.average_buffers(model)
            sched.step()
            val_ua = _ua(model, feats, y, val_idx, n_frames)
            state["epoch"] += 1
            state["history"].append({"epoch": state["epoch"], "loss": loss, "val_ua": val_ua})
            if val_ua > state["best_ua"]:
                state.update(best_ua=val_ua, best_epoch=state["epoch"], best_state=_cpu_copy(model.state_dict()))
            log.info("%s epoch %d loss %.4f val_ua %.4f", description, state["epoch"], loss, val_ua)
            pbar.update(task, completed=state["epoch"], status=f"loss {loss:.3f} val UA {val_ua:.3f}")
            save()
    model.load_state_dict(state["best_state"])
    return FitResult(model.eval(), state["best_epoch"], state["best_ua"], state["history"])


@dataclass(frozen=True)
class _Step:
    """Where a training step runs: device, autocast precision and the (fp16-only) loss scaler."""

    device: torch.device
    precision: str
    scaler: torch.amp.GradScaler


def corpus_classes(y: np.ndarray, fit_idx: np.ndarray, groups: np.ndarray | None, n_classes: int) -> np.ndarray | None:
    """Per utterance, the classes its corpus has in training ``(len(y), n_classes)``, or
    ``None`` when every corpus has every class.

    The loss of an utterance is then a softmax over its own corpus's classes only: a corpus
    without, say, "boredom" never teaches the model that its clips are not bored.
    """
    if groups is None:
        return None
    present = np.zeros((int(groups.max()) + 1, n_classes), dtype=bool)
    present[groups[fit_idx], y[fit_idx]] = True
    used = np.unique(groups[fit_idx])
    return None if present[used].all() else present[groups]


def _epoch(net, model, opt, step_on: _Step, weights, sources, y, state, n_frames, cfg, rng, gen, save,
           allowed: np.ndarray | None = None) -> float:
    """Train on this rank's shard of the epoch's permutation from ``state["step"]`` on.

    ``sources`` holds the features and those of each augmented copy; every sample is
    drawn from one of them at random. ``allowed`` (see :func:`corpus_classes`) restricts
    each utterance's softmax to its corpus's classes.

    After each step, a requested stop (SIGINT/SIGTERM, see :func:`request_stop`) or every
    ``cfg.checkpoint_every`` steps, ``save()`` writes a checkpoint holding the position;
    a requested stop then raises :class:`Interrupted`. Returns the epoch's mean loss over
    all ranks.
    """
    net.train()
    order = distributed.shard(state["order"])
    starts = range(0, len(order), cfg.batch_size)
    for step in range(state["step"], len(starts)):
        idx = order[starts[step] : starts[step] + cfg.batch_size]
        state["step"] = step + 1
        if len(idx) < 2:  # batch-norm needs two samples
            continue
        # without augmentation no draw is made, so such runs keep the RNG stream (and results) they had
        picks = rng.integers(0, len(sources), len(idx)) if len(sources) > 1 else np.zeros(len(idx), dtype=int)
        feats = [sources[s][j] for s, j in zip(picks, idx, strict=True)]
        xb = np.stack([fit_frames(f, n_frames, start=_crop_start(f, n_frames, rng)) for f in feats])
        dev = step_on.device
        x = to_device(xb, dev)
        if cfg.spec_augment:
            x = spec_augment(model.norm(x), gen) * model.norm.std + model.norm.mean
        w, target = to_device(weights[idx], dev), to_device(y[idx], dev)
        with autocast(dev, step_on.precision):
            logits = net(x)
        logits = logits.float()
        if allowed is not None:
            logits = logits.masked_fill(~to_device(allowed[idx], dev), -1e9)
        loss = (nn.functional.cross_entropy(logits, target, reduction="none") * w).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        step_on.scaler.scale(loss).backward()
        step_on.scaler.step(opt)
        step_on.scaler.update()
        state["loss_sum"] += loss.item() * len(idx)
        state["seen"] += len(idx)
        stop = _stop_requested()
        if stop or (cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0):
            save()
        if stop:
            raise Interrupted(f"stopped at epoch {state['epoch'] + 1} step {state['step']}; checkpoint written")
    total, seen = distributed.sum_array(np.array([state["loss_sum"], state["seen"]]))
    return float(total / max(1, seen))


class Interrupted(KeyboardInterrupt):
    """Training stopped on request after writing a checkpoint."""


_STOP = {"active": False, "requested": False}


def request_stop() -> bool:
    """Ask a running :func:`fit` to finish its step, write a checkpoint and raise :class:`Interrupted`.

    Returns False when no training loop is running (the caller should stop another way).
    """
    if _STOP["active"]:
        _STOP["requested"] = True
    return _STOP["active"]


def _stop_requested() -> bool:
    """The stop flag, agreed over ranks (any rank asked -> all stop at the same step)."""
    return bool(distributed.sum_array(np.array([float(_STOP["requested"])]))[0] > 0)


@contextlib.contextmanager
def _stop_scope():
    """While the loop runs, :func:`request_stop` (from a signal handler) stops it cleanly."""
    _STOP.update(active=True, requested=False)
    try:
        yield
    finally:
        _STOP.update(active=False, requested=False)


def _crop_start(feat: np.ndarray, n: int, rng: np.random.Generator) -> int:
    extra = feat.shape[1] - n
    return int(rng.integers(0, extra + 1)) if extra > 0 else 0


def _ua(model, feats, y, idx, n_frames) -> float:
    """Validation UA; each rank scores a slice and the confusion counts are summed."""
    mine = idx[distributed.rank() :: distributed.world()]
    pred = score_features(model, [feats[i] for i in mine], n_frames).argmax(axis=1) if len(mine) else []
    k = int(y.max()) + 1
    counts = np.zeros((k, k))
    np.add.at(counts, (y[mine], np.asarray(pred, dtype=np.int64)), 1)
    counts = distributed.sum_array(counts)
    support = counts.sum(axis=1)
    return float(np.mean(np.diag(counts)[support > 0] / support[support > 0]))


def _param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Trainable parameters; a pretrained ``encoder`` inside the model learns ``encoder_lr_scale`` slower."""
    encoder = getattr(model.body, "encoder", None)
    in_encoder = {id(p) for p in encoder.parameters()} if encoder is not None else set()
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if id(p) not in in_encoder]}]
    if in_encoder:
        groups.append({"params": [p for p in trainable if id(p) in in_encoder], "lr": cfg.lr * cfg.encoder_lr_scale})
    return groups


def _lr_factor(cfg: TrainConfig):
    if cfg.schedule == "constant":
        return lambda epoch: 1.0
    return lambda epoch: 0.5 * (1 + math.cos(math.pi * min(epoch, cfg.epochs) / cfg.epochs))


def _cpu_copy(state_dict: dict) -> dict:
    """A CPU copy of a state dict (the best epoch's weights), whatever device the model is on."""
    return copy.deepcopy(to_cpu(state_dict))


def _save_checkpoint(path: Path, model, opt, sched, scaler, rng, gen, state) -> None:
    """Everything to resume exactly, as CPU tensors (device-neutral; read with ``map_location="cpu"``)."""
    payload = {
        "model": to_cpu(model.state_dict()),
        "optimizer": to_cpu(opt.state_dict()),
        "scheduler": sched.state_dict(),
        "state": state,
        "rng": {"numpy": rng.bit_generator.state, "torch_gen": gen.get_state(),
                "torch": torch.get_rng_state(), "python": random.getstate()},
    }
    if scaler.is_enabled():
        payload["scaler"] = scaler.state_dict()
    dev = device_of(model)
    if dev.type == "cuda":  # dropout on the GPU draws from the GPU's generator
        payload["rng"]["cuda"] = torch.cuda.get_rng_state(dev)
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _resume(path: Path, model, opt, sched, scaler, rng, gen) -> dict:
    payload = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(payload["model"])  # copies into the model's device
    opt.load_state_dict(payload["optimizer"])  # moves the moments next to their parameters
    sched.load_state_dict(payload["scheduler"])
    if scaler.is_enabled() and "scaler" in payload:
        scaler.load_state_dict(payload["scaler"])
    rng.bit_generator.state = payload["rng"]["numpy"]
    gen.set_state(payload["rng"]["torch_gen"])
    torch.set_rng_state(payload["rng"]["torch"])
    random.setstate(payload["rng"]["python"])
    dev = device_of(model)
    if dev.type == "cuda" and "cuda" in payload["rng"]:
        torch.cuda.set_rng_state(payload["rng"]["cuda"], dev)
    return payload["state"]

