"""The service's memory of speakers: running feature statistics per speaker (or session) id.

A client that sends the same ``speaker`` id with each clip gets predictions adapted to that
speaker: each clip's features are added to the id's :class:`~emovox.normalize.Stats`, and
the clip is scored with the statistics of every clip of that id so far, itself included.
Ids are never mixed, and memory stays bounded: the least recently heard id is forgotten
once more than ``capacity`` ids are held (it starts afresh if it comes back).
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict

import numpy as np

from emovox.errors import ConfigError
from emovox.normalize import Stats

MAX_ID_CHARS = 200  # longer ids are refused (400)


class SpeakerStats:
    """A thread-safe LRU of running statistics, one per speaker id.

    Parameters
    ----------
    capacity : int
        Most ids held at once.

    Examples
    --------
    >>> store = SpeakerStats(capacity=2)
    >>> stats, clips = store.add("alice", np.ones((3, 10)))
    >>> clips, stats.n, len(store)
    (1, 10, 1)
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ConfigError(f"the service must hold at least one speaker, got max_speakers={capacity}")
        self.capacity = capacity
        self._stats: OrderedDict[str, tuple[Stats, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._stats)

    def __contains__(self, speaker: str) -> bool:
        return speaker in self._stats

    def add(self, speaker: str, feat: np.ndarray) -> tuple[Stats, int]:
        """Add one clip's features ``(F, T)`` to ``speaker``'s statistics.

        Returns
        -------
        (Stats, int)
            A copy of the speaker's statistics now, this clip included (later clips do not
            change it), and the number of clips they hold.
        """
        with self._lock:
            stats, clips = self._stats.pop(speaker, (Stats(), 0))
            stats.update(feat)
            self._stats[speaker] = (stats, clips + 1)  # the most recent id goes last
            if len(self._stats) > self.capacity:
                self._stats.popitem(last=False)
            return copy.deepcopy(stats), clips + 1
