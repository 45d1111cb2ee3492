"""Inference: score feature matrices with a model, and the :class:`Predictor` for audio.

This module never imports training code.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, TypeVar

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from emovox import audio, models, normalize, quality
from emovox import labels as labelmod
from emovox.bundled import resolve_model
from emovox.device import check as check_device
from emovox.device import of as device_of
from emovox.device import to_device
from emovox.errors import AudioError, ConfigError
from emovox.features import FeatureConfig, vector_slices, windows
from emovox.frontend import extract_batch
from emovox.models import ModelSpec
from emovox.normalize import Prior, Stats
from emovox.segment import Segment, VadConfig, speech_segments
from emovox.voices import group_voices

BATCH_WINDOWS = 64
# the quality block counts speech with the energy gate: 0.4 ms per 3 s clip against Silero's 2.3
# (benchmarks/inference.py)
QUALITY_VAD = VadConfig(method="energy")
PREDICT_BATCH = 32  # inputs of one predict call decoded and featurised together (memory: their audio)
LONG_INPUT_S = 120.0  # s: longer files are streamed and summarised over their speech segments
MIN_ADAPT_SEGMENTS = 2  # a voice's segments before the timeline adapts to it (docs/benchmarks.md, "Adaptation")
T = TypeVar("T")
R = TypeVar("R")


@torch.inference_mode()
def score_features(model: torch.nn.Module, feats: Sequence[np.ndarray], n_frames: int) -> np.ndarray:
    """Class probabilities ``(len(feats), n_classes)``: each utterance's windows, averaged.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier in eval mode mapping ``(B, F, n_frames)`` to logits.
    feats : sequence of ndarray
        Feature matrices ``(F, T)`` of any length.
    n_frames : int
        The model's fixed input length.

    Windows go to the model's device one batch at a time; probabilities come back as numpy.
    """
    model.eval()
    dev = device_of(model)
    wins = [windows(f, n_frames) for f in feats]
    owner = np.repeat(np.arange(len(wins)), [len(w) for w in wins])
    stacked = np.concatenate(wins) if wins else np.zeros((0, 1, n_frames), np.float32)
    probs = []
    for i in range(0, len(stacked), BATCH_WINDOWS):
        logits = model(to_device(stacked[i : i + BATCH_WINDOWS], dev))
        probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    probs = np.concatenate(probs) if probs else np.zeros((0, 0), np.float32)
    out = np.zeros((len(wins), probs.shape[1] if len(probs) else 0), dtype=np.float64)
    np.add.at(out, owner, probs)
    return out / np.maximum(1, np.bincount(owner, minlength=len(wins)))[:, None]


Input = str | Path | tuple[np.ndarray, int] | np.ndarray


class Predictor:
    """A trained model ready for audio: paths, arrays, lists, long recordings.

    Parameters
    ----------
    model : callable
        Maps a float tensor ``(B, F, T)`` to logits ``(B, n_classes)`` (a torch module, or
        an :class:`emovox.export.OnnxModel`).
    spec : ModelSpec or dict
        The checkpoint's description (:class:`emovox.models.ModelSpec`; a dict is read
        with :meth:`~emovox.models.ModelSpec.from_dict`): labels, feature config, input
        length, speaker normalisation.

    Examples
    --------
    >>> p = Predictor.load("runs/emodb-cnn")  # doctest: +SKIP
    >>> p.predict("angry.wav")["label"]  # doctest: +SKIP
    'angry'
    """

    def __init__(self, model, spec: ModelSpec | dict, *, adapted=None, prior: Prior | None = None):
        if isinstance(model, models.Adaptive):  # one clip: the single head; with statistics: the adapted one
            adapted, prior = model.adapted, _prior(model)
            model = model.single
        self.model = model
        self.adapted_model = adapted  # reads features less a speaker's (shrunk) mean, over the prior's spread
        self.prior = prior
        self.spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_dict(spec)
        self.labels: list[str] = list(self.spec.labels)  # what results report (see :meth:`only`)
        self._kept: list[int] | None = None  # their indices among the model's classes
        self.features: FeatureConfig = self.spec.features
        self.n_frames: int = self.spec.n_frames
        self.speaker_norm: bool = self.spec.speaker_norm
        self.speaker_stats_: Stats | None = None
        self.device = str(device_of(model))  # where the network (and an ssl front end) runs
        self.front: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None  # replaces extract_batch

    @classmethod
    def load(cls, run_dir: str | Path | None = None, *, backend: str = "torch", device: str = "auto") -> Predictor:
        """Load a run dir (or its ``model.pt``); ``None`` loads the bundled default model.

        ``backend="onnx"`` runs the same network with onnxruntime (exported in memory), on
        the CPU. ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) is where the torch
        backend runs; ``auto`` takes CUDA when there is a GPU. A checkpoint written on
        any device loads on any other.
        """
        if backend == "onnx" and check_device(device) not in ("auto", "cpu"):
            raise ConfigError(f"the onnx backend runs on the CPU, not on {device!r}",
                              fix="pass --device cpu, or --backend torch for the GPU")
        model, spec = models.load(resolve_model(run_dir), device="cpu" if backend == "onnx" else device)
        if backend not in ("torch", "onnx"):
            raise ConfigError(f"unknown backend {backend!r}", fix="use torch or onnx")
        if backend == "torch":
            return cls(model, spec)
        from emovox.export import OnnxEncoder, OnnxModel, on_waveform

        if isinstance(model, models.Adaptive):
            predictor = cls(OnnxModel.from_torch(model.single, spec), spec,
                            adapted=OnnxModel.from_torch(model.adapted, spec), prior=_prior(model))
        else:
            predictor = cls(OnnxModel.from_torch(model, spec), spec)
        if on_waveform(spec):  # the front end runs in onnxruntime too
            predictor.front = OnnxEncoder(spec)
        return predictor

    def predict(self, x: Input | Sequence[Input], *, sr: int | None = None,
                adapt: str | Sequence | None = None) -> dict | list[dict]:
        """Emotion of one input or of each input in a list.

        Parameters
        ----------
        x : path, (array, sample rate), array, or a list of these
            Arrays are mono ``(n,)`` or ``(n, channels)``; a bare array needs ``sr``.
        sr : int, optional
            Sample rate of bare arrays, in Hz.
        adapt : {"inputs"} or sequence, optional
            ``"inputs"``: all inputs are one speaker or setting, and adapt to each other; a
            sequence aligned with ``x`` (e.g. each file's folder): inputs with the same item
            adapt to each other. Default: each input alone, or with :meth:`adapt`'s statistics.

        Returns
        -------
        dict or list of dict
            ``{"label": str, "scores": {label: probability}, "duration_s": float,
            "quality": {...}}`` (see :func:`emovox.quality.assess`). A file longer than
            :data:`LONG_INPUT_S` is streamed: its speech segments are scored and their
            probabilities averaged, weighted by duration, and ``"summary"`` says so.
        """
        single = isinstance(x, (str, Path, tuple, np.ndarray))
        items = [x] if single else list(x)
        if adapt is not None and not self.can_adapt:
            raise ConfigError("this model does not adapt to a speaker", fix="drop the adaptation, or train with "
                              "train: adapt_prior (or speaker_norm)")
        groups = [0] * len(items) if adapt == "inputs" else None if adapt is None else list(adapt)
        entries = [e for k in range(0, len(items), PREDICT_BATCH)
                   for e in self._entries(items[k : k + PREDICT_BATCH], sr)]
        stats: list[Stats | None] = [None] * len(items)
        if groups is not None:
            pooled = {g: Stats.of([f for e, h in zip(entries, groups, strict=True) if h == g for f in e["feats"]])
                      for g in set(groups)}
            stats = [pooled[g] for g in groups]
        owner = np.repeat(np.arange(len(entries)), [len(e["feats"]) for e in entries])
        scored = self.score([f for e in entries for f in e["feats"]], [s for e in entries for s in e["seconds"]],
                            stats=[stats[i] for i in owner] if groups is not None else None)
        bounds = np.cumsum([0] + [len(e["feats"]) for e in entries])
        results = [_summarise(scored[a:b], e, self.labels)
                   for a, b, e in zip(bounds[:-1], bounds[1:], entries, strict=True)]
        return results[0] if single else results

    def _entries(self, items: Sequence[Input], sr: int | None) -> list[dict]:
        """Each input's features, each feature matrix's duration (s) and its quality block:
        short inputs decoded and featurised together (the front end batches them), a long
        file streamed, one matrix per speech segment; only these inputs' audio in memory."""
        rate = self.features.sample_rate
        long = [isinstance(item, (str, Path)) and _header_seconds(item) > LONG_INPUT_S for item in items]
        signals = {k: self._signal(item, sr) for k, item in enumerate(items) if not long[k]}
        feats = dict(zip(signals, self.extract(list(signals.values())), strict=True))
        out = []
        for k, item in enumerate(items):
            if not long[k]:
                y = signals[k]
                out.append({"feats": [feats[k]], "seconds": [len(y) / rate], "duration_s": len(y) / rate,
                            "quality": quality.assess(y, rate, vad=QUALITY_VAD)})
                continue
            segment_feats, seconds = [], []
            for segments in self._segment_batches(item, None, BATCH_WINDOWS):
                segment_feats += self.extract([s.audio for s in segments])
                seconds += [s.end - s.start for s in segments]
            out.append({"feats": segment_feats, "seconds": seconds, "duration_s": audio.duration(item),
                        "summary": {"segments": len(segment_feats), "speech_s": round(float(sum(seconds)), 3),
                                    "method": "speech segments (VAD), probabilities averaged weighted by duration"}})
        return out

    @property
    def can_adapt(self) -> bool:
        """Whether the model uses a speaker's (or recording's) statistics when given them."""
        return self.speaker_norm or self.adapted_model is not None

    def only(self, classes: Sequence[str]) -> Predictor:
        """Report only these of the model's classes: their probabilities renormalised to sum
        to one, the label the likeliest of them. For audio known to hold no other emotion
        (say the bundled model's five without fearful); no names (blank ones are skipped): all
        classes again."""
        wanted = {labelmod.canonical(c.strip()) for c in classes if c.strip()}
        if not wanted:
            self._kept, self.labels = None, list(self.spec.labels)
            return self
        unknown = sorted(wanted - set(self.spec.labels))
        if unknown:
            raise ConfigError(f"the model has no class {', '.join(unknown)}",
                              fix=f"choose among {', '.join(self.spec.labels)}")
        self._kept = [i for i, label in enumerate(self.spec.labels) if label in wanted]
        self.labels = [self.spec.labels[i] for i in self._kept]
        return self

    def adapt(self, x: Input | Sequence[Input], *, sr: int | None = None) -> Predictor:
        """Learn the speaker's feature statistics from unlabelled audio of that speaker
        (for utterance vectors, two recordings or more); later predictions use them.

        Only matters for models that can adapt (:attr:`can_adapt`). Without statistics,
        each input is normalised with its own, except utterance vectors (one frame per
        input), which share the statistics of all inputs of the call.
        """
        self.speaker_stats_ = self.stats_of(x, sr=sr)
        return self

    def stats_of(self, x: Input | Sequence[Input], *, sr: int | None = None) -> Stats:
        """The feature statistics of unlabelled inputs of one speaker or setting (no state change)."""
        return self._stats_of(self.extract(self._signals(x, sr)[0]))

    def _stats_of(self, feats: list[np.ndarray]) -> Stats:
        """One speaker's statistics; utterance vectors need two inputs or more (one has no
        spread), unless the model shrinks them toward a prior."""
        if self.features.kind == "utterance" and len(feats) < 2 and self.prior is None:
            raise AudioError("this model z-scores utterance vectors per speaker, and one input has no statistics",
                             fix="pass two or more recordings of the speaker: files together, a recording to "
                                 "timeline, or --adapt-from FILE --adapt-from FILE (Predictor.adapt)")
        return Stats.of(feats)

    def predict_signals(self, signals: Sequence[np.ndarray], *, stats: Stats | None = None) -> list[dict]:
        """Emotions of mono signals already at ``self.features.sample_rate``."""
        sr = self.features.sample_rate
        return self.score(self.extract(signals), [len(y) / sr for y in signals], stats=stats)

    def extract(self, signals: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The features of mono signals at ``self.features.sample_rate``, one matrix each,
        before any speaker normalisation (what :meth:`score` and ``Stats.update`` take)."""
        if self.front is not None:
            return self.front(list(signals))
        return extract_batch(list(signals), self.features, device=self.device)

    def score(self, feats: Sequence[np.ndarray], seconds: Sequence[float], *,
              stats: Stats | Sequence[Stats | None] | None = None) -> list[dict]:
        """Results for features from :meth:`extract` (of one call or of several), all in one
        forward pass; ``seconds`` are the clips' durations. ``stats`` adapts a model that can
        adapt: one speaker's statistics for all, or a list aligned with ``feats`` (``None``
        items: unadapted). The service batches requests so."""
        given = stats if stats is not None else self.speaker_stats_
        per_item = list(given) if isinstance(given, (list, tuple)) else [given] * len(feats)
        if self.adapted_model is not None:
            return self._score_two_heads(list(feats), seconds, per_item)
        if self.speaker_norm:
            feats = self._normalise(list(feats), per_item)
        probs = score_features(self.model, feats, self.n_frames)
        return [self._result(p, s) for p, s in zip(probs, seconds, strict=True)]

    def _score_two_heads(self, feats: list[np.ndarray], seconds: Sequence[float],
                         per_item: list[Stats | None]) -> list[dict]:
        """:meth:`score` for an :class:`~emovox.models.Adaptive` model: inputs with statistics
        (``per_item``, aligned with ``feats``) through the adapted head, the others through
        the single-clip head."""
        probs = np.zeros((len(feats), len(self.spec.labels)))
        alone = [i for i, s in enumerate(per_item) if s is None]
        adapted = [i for i, s in enumerate(per_item) if s is not None]
        if alone:
            probs[alone] = score_features(self.model, [feats[i] for i in alone], self.n_frames)
        if adapted:
            x = [per_item[i].apply(feats[i], self.prior) for i in adapted]
            probs[adapted] = score_features(self.adapted_model, x, self.n_frames)
        return [self._result(p, s) for p, s in zip(probs, seconds, strict=True)]

    def _normalise(self, feats: list[np.ndarray], per_item: list[Stats | None]) -> list[np.ndarray]:
        """Speaker-normalise with each input's statistics (``per_item``); inputs without them
        are each taken for a speaker of their own (frames), or all together for one speaker
        (utterance vectors, one frame each)."""
        out = [None if s is None else s.apply(f) for f, s in zip(feats, per_item, strict=True)]
        bare = [i for i, f in enumerate(out) if f is None]
        if bare:
            rest = [feats[i] for i in bare]
            if self.features.kind == "utterance":
                self._stats_of(rest)  # refuses a single vector, which has no spread
                speakers = [0] * len(rest)
            else:
                speakers = list(range(len(rest)))
            for i, f in zip(bare, normalize.by_speaker(rest, speakers), strict=True):
                out[i] = f
        return out

    def timeline(self, path: str | Path | BinaryIO, *, vad: VadConfig | None = None, batch: int = 8,
                 adapt: bool = True) -> list[dict]:
        """Classify each speech segment of a recording of any length (streamed from disk).

        Returns rows ``{"start": s, "end": s, "label", "scores", "speaker", "adapted"}``
        (times in seconds). Segments are found and their features extracted ``batch`` at a
        time, as many batches side by side as torch may use threads (:func:`_map_ordered`);
        only the features are kept, never the audio. When the features hold a d-vector, the
        segments are grouped by voice (:func:`emovox.voices.group_voices`; ``speaker`` is
        ``"S1"``, ``"S2"``, ... in order of appearance, else ``None``). A model that can
        adapt, without :meth:`adapt` statistics and with ``adapt``, then adapts to each
        voice's own segments once it has :data:`MIN_ADAPT_SEGMENTS` of them (a model that
        only reads speaker-normalised features, to the whole recording's speech).
        """
        workers = torch.get_num_threads()
        adapting = adapt and self.can_adapt and self.speaker_stats_ is None
        if not adapting and "dvector" not in self._parts():  # nothing to learn first: score as segments come
            rows: list[dict] = []
            for segments, results in _map_ordered(lambda segs: self.predict_signals([s.audio for s in segs]),
                                                  self._segment_batches(path, vad, batch), workers):
                rows += _rows([(s.start, s.end) for s in segments], results)
            return [{**r, "speaker": None, "adapted": self.speaker_stats_ is not None} for r in rows]
        spans: list[tuple[float, float]] = []
        feats: list[np.ndarray] = []
        for segments, part in _map_ordered(lambda segs: self.extract([s.audio for s in segs]),
                                           self._segment_batches(path, vad, batch), workers):
            feats += part
            spans += [(s.start, s.end) for s in segments]
        voices = self._voices(feats)
        stats = self._recording_stats(feats, voices) if adapting else [self.speaker_stats_] * len(feats)
        rows = []
        for i in range(0, len(feats), batch):
            times = spans[i : i + batch]
            rows += _rows(times, self.score(feats[i : i + batch], [end - start for start, end in times],
                                            stats=stats[i : i + batch]))
        for row, voice, used in zip(rows, voices, stats, strict=True):
            row["speaker"] = None if voice < 0 else f"S{voice + 1}"
            row["adapted"] = used is not None
        return rows

    def _parts(self) -> tuple[str, ...]:
        """The utterance vectors the model reads (none for frame features)."""
        return self.features.utterance if self.features.kind == "utterance" else ()

    def _voices(self, feats: list[np.ndarray]) -> np.ndarray:
        """A voice number per segment (:func:`emovox.voices.group_voices`); -1 without d-vectors."""
        e = self.voice_embeddings(feats)
        return np.full(len(feats), -1) if e is None else group_voices(e)

    def voice_embeddings(self, feats: Sequence[np.ndarray]) -> np.ndarray | None:
        """The d-vectors in features from :meth:`extract` ``(n, 256)``, less the training
        speakers' mean d-vector when the model knows it (what every d-vector shares drowns
        what tells voices apart), or ``None`` when the features hold no d-vector."""
        parts = self._parts()
        if "dvector" not in parts or not len(feats):
            return None
        span = vector_slices(parts)["dvector"]
        e = np.stack([f[span, 0] for f in feats]).astype(np.float64)
        return e if self.prior is None else e - self.prior.mean[span]

    def _recording_stats(self, feats: list[np.ndarray], voices: np.ndarray) -> list[Stats | None]:
        """Per segment, the statistics it is adapted with: its voice's segments (all of the
        recording's when voices are not known). An adaptive model adapts to a voice once it
        has :data:`MIN_ADAPT_SEGMENTS` segments, and scores the others as single clips; a
        model that only reads speaker-normalised features falls back to the recording's."""
        whole = Stats.of(feats) if len(feats) >= 2 else None
        by_voice = {v: Stats.of([f for f, w in zip(feats, voices, strict=True) if w == v]) for v in set(voices)}
        if self.adapted_model is not None:
            return [by_voice[v] if v >= 0 and by_voice[v].n >= MIN_ADAPT_SEGMENTS else
                    whole if v < 0 and len(feats) >= MIN_ADAPT_SEGMENTS else None for v in voices]
        return [by_voice[v] if v >= 0 and by_voice[v].n >= 2 else whole for v in voices]

    def _segment_batches(self, source, vad: VadConfig | None, batch: int) -> Iterator[list[Segment]]:
        """The recording's speech segments, decoded as a stream, ``batch`` at a time."""
        if hasattr(source, "seek"):
            source.seek(0)
        sr = self.features.sample_rate
        pending: list[Segment] = []
        for seg in speech_segments(audio.stream(source, sr=sr), sr, vad):
            pending.append(seg)
            if len(pending) >= batch:
                yield pending
                pending = []
        if pending:
            yield pending

    def _signals(self, x: Input | Sequence[Input], sr: int | None) -> tuple[list[np.ndarray], bool]:
        """Mono signals at the model's rate, and whether ``x`` was a single input."""
        single = isinstance(x, (str, Path, tuple, np.ndarray))
        return [self._signal(item, sr) for item in ([x] if single else x)], single

    def _signal(self, item: Input, sr: int | None) -> np.ndarray:
        target = self.features.sample_rate
        if isinstance(item, (str, Path)):
            return audio.load(item, sr=target)
        if isinstance(item, tuple):
            y, sr = item
        else:
            y = item
            if sr is None:
                raise AudioError("an array needs its sample rate", fix="pass (array, sr) or sr=...")
        return audio.resample(audio.check_signal(np.asarray(y), sr), sr, target)

    def _result(self, probs: np.ndarray, seconds: float) -> dict:
        if self._kept is not None:  # renormalised, however unlikely the kept classes (none at all: uniform)
            kept = probs[self._kept].astype(np.float64)
            total = kept.sum()
            probs = kept / total if total > 0 else np.full(len(kept), 1 / len(kept))
        scores = {lab: round(float(p), 6) for lab, p in zip(self.labels, probs, strict=True)}
        return {"label": self.labels[int(np.argmax(probs))], "scores": scores, "duration_s": round(seconds, 3)}


def _header_seconds(path: str | Path) -> float:
    """A file's duration from its header; 0 when it is no readable audio file (loading it
    then says what is wrong)."""
    try:
        return audio.duration(path) if Path(path).is_file() else 0.0
    except AudioError:
        return 0.0


def _summarise(results: list[dict], entry: dict, labels: list[str]) -> dict:
    """One input's result from its feature matrices' results (one, or a long file's segments)."""
    if "summary" not in entry:
        return {**results[0], "quality": entry["quality"]}
    weights = np.array(entry["seconds"]) if results else np.zeros(0)
    probs = np.array([[r["scores"][k] for k in labels] for r in results]).reshape(len(results), len(labels))
    mean = weights @ probs / weights.sum() if len(results) else np.full(len(labels), 1 / len(labels))
    return {"label": labels[int(np.argmax(mean))], "scores": {k: round(float(p), 6) for k, p in zip(labels, mean,
                                                                                                 strict=True)},
            "duration_s": round(entry["duration_s"], 3), "summary": entry["summary"]}


def _prior(model: models.Adaptive) -> Prior:
    """The training speakers' statistics that an adaptive model's are shrunk toward."""
    return Prior(model.prior_mean.double().cpu().numpy(), model.prior_std.double().cpu().numpy(), model.prior_frames)


def _rows(spans: Sequence[tuple[float, float]], results: Sequence[dict]) -> list[dict]:
    """Timeline rows: each segment's (start, end) in seconds with its label and scores."""
    return [{"start": round(start, 3), "end": round(end, 3), "label": r["label"], "scores": r["scores"]}
            for (start, end), r in zip(spans, results, strict=True)]


def _map_ordered(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` for each item, in order, ``workers`` items side by side, each
    computing on one thread (torch, BLAS, openSMILE), with at most ``2 * workers`` in flight.

    Long recordings are scored so: on idle cores this is as fast as one batch at a time on
    all threads, but when other processes want the cores too, threads that share one batch
    lose most of them to spinning while they wait for each other, and one batch per thread
    does not (docs/benchmarks.md, "Inference speed"). Torch's thread count is the
    process's, so it is lowered for the duration of the call and then restored.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1), ThreadPoolExecutor(max(1, workers)) as pool:
            pending: deque = deque()
            for item in items:
                pending.append((item, pool.submit(fn, item)))
                if len(pending) > 2 * workers:
                    item, done = pending.popleft()
                    yield item, done.result()
            while pending:
                item, done = pending.popleft()
                yield item, done.result()
    finally:
        torch.set_num_threads(threads)
