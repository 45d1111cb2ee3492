import numpy as np

from emovox.segment import VadConfig, frame_db, speech_segments

from .conftest import tone

SR = 16000


def _signal(layout):
    return np.concatenate([tone(200, s, SR) if speech else np.zeros(int(s * SR), np.float32) for s, speech in layout])


def _blocks(y, size):
    return (y[i : i + size] for i in range(0, len(y), size))


def test_segments_found_whatever_the_block_size():
    y = _signal([(0.5, False), (1.0, True), (0.2, False), (0.8, True), (1.0, False), (2.0, True), (0.3, False)])
    # the 0.2 s pause is shorter than min_silence_s, so the first two bursts merge
    expected = [(0.5, 2.5), (3.5, 5.5)]
    for size in (SR // 10, 777, SR * 3):
        segs = list(speech_segments(_blocks(y, size), SR, VadConfig(pad_s=0.0)))
        got = [(round(s.start, 1), round(s.end, 1)) for s in segs]
        assert got == expected, size
        for s in segs:
            assert abs(len(s.audio) / SR - (s.end - s.start)) < 1e-6


def test_long_speech_is_cut_and_short_blips_dropped():
    y = _signal([(0.2, False), (7.0, True), (0.5, False), (0.1, True), (0.5, False)])
    segs = list(speech_segments(_blocks(y, 4000), SR, VadConfig(max_segment_s=3.0, pad_s=0.0)))
    assert [round(s.end - s.start, 1) for s in segs] == [3.0, 3.0, 1.0]


def test_frame_db_levels():
    assert np.allclose(frame_db(np.full(480, 0.1, np.float32), 160), -20.0)
