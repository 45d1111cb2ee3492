from pathlib import Path

import numpy as np
import pytest

from emovox.corpora import detect, load_corpus
from emovox.errors import CorpusError
from emovox.labels import apply_label_map, canonical, ordered

from .conftest import tone, write


def _touch(root: Path, names: list[str]) -> None:
    for name in names:
        write(root / name, tone(150, 0.3, 16000), 16000)


def test_ravdess_reader_parses_names_and_skips_song(ravdess_dir):
    manifest = load_corpus(ravdess_dir, corpus="auto")
    assert detect(ravdess_dir) == "ravdess"
    assert len(manifest) == 4 * 4 * 3 + 3  # + stereo, corrupt and silent speech files; song ignored
    u = next(m for m in manifest if m.path.endswith("03-01-03-02-02-01-01.wav"))
    assert (u.label, u.speaker, u.corpus) == ("happy", "ravdess:01", "ravdess")
    assert u.meta == {"gender": "male", "intensity": "strong", "sentence": "02", "repetition": "01"}
    assert {m.meta["gender"] for m in manifest if m.speaker == "ravdess:02"} == {"female"}


@pytest.mark.parametrize(
    ("names", "corpus", "expected"),
    [
        (["wav/03a01Fa.wav", "wav/16b10Tb.wav"], "emodb",
         [("happy", "emodb:03", "male"), ("sad", "emodb:16", "female")]),
        (["AudioWAV/1001_DFA_ANG_XX.wav", "AudioWAV/1091_TIE_SAD_HI.wav"], "cremad",
         [("angry", "cremad:1001", None), ("sad", "cremad:1091", None)]),
        (["OAF_angry/OAF_back_angry.wav", "YAF_pleasant_surprised/YAF_bean_ps.wav"], "tess",
         [("angry", "tess:OAF", "female"), ("surprised", "tess:YAF", "female")]),
        (["AudioData/DC/sa01.wav", "AudioData/KL/su15.wav", "AudioData/JE/n03.wav"], "savee",
         [("sad", "savee:DC", "male"), ("neutral", "savee:JE", "male"), ("surprised", "savee:KL", "male")]),
        (["samples/EB0_anger_12.wav", "samples/KS0_sadness_3.flac", "samples/MK0_surprised_60.wav"], "nemo",
         [("angry", "nemo:EB0", None), ("sad", "nemo:KS0", None), ("surprised", "nemo:MK0", None)]),
        (["01Neutral/n1-01-01-01-01.wav", "04Sad/S4-04-02-02-29.flac", "05Angry/a5-03-01-01-07.wav"], "ased",
         [("neutral", "ased:01", "female"), ("sad", "ased:29", "male"), ("angry", "ased:07", "female")]),
        (["angry/spk1/a.wav", "Sadness/spk2/b.flac"], "folder",
         [("angry", "folder:spk1", None), ("sad", "folder:spk2", None)]),
    ],
)
def test_each_reader_and_auto_detection(tmp_path, names, corpus, expected):
    _touch(tmp_path, names)
    assert detect(tmp_path) == corpus
    got = sorted((u.label, u.speaker, u.meta.get("gender")) for u in load_corpus(tmp_path))
    assert got == sorted(expected)
    assert all(Path(u.path).is_absolute() for u in load_corpus(tmp_path))


def test_cremad_intensity_and_emodb_sentence(tmp_path):
    _touch(tmp_path, ["1001_DFA_ANG_HI.wav"])
    assert load_corpus(tmp_path)[0].meta == {"sentence": "DFA", "intensity": "high"}


def test_csv_reader_relative_paths_and_speakers(tmp_path):
    _touch(tmp_path, ["clips/a.wav", "clips/b.wav"])
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label,speaker\nclips/a.wav,Anger,s1\nclips/b.wav,neutral,\n")
    manifest = load_corpus(csv)
    assert [(u.label, u.speaker) for u in manifest] == [("angry", "folder:s1"), ("neutral", None)]
    assert manifest[0].path == str((tmp_path / "clips" / "a.wav").resolve())


def test_csv_with_unknown_label_names_the_file(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\na.wav,grumpy\n")
    with pytest.raises(CorpusError, match="labels.csv.*grumpy"):
        load_corpus(csv)


def test_empty_or_unknown_folder_is_a_clear_error(tmp_path):
    (tmp_path / "notes").mkdir()
    with pytest.raises(CorpusError, match="no known corpus layout"):
        load_corpus(tmp_path)
    with pytest.raises(CorpusError, match="no emodb audio files"):
        load_corpus(tmp_path, corpus="emodb")
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(tmp_path / "missing")


def test_labels_canonical_merge_and_order():
    assert canonical("Happiness") == "happy" and canonical("ps") == "surprised"
    assert apply_label_map(["calm", "sad", "angry"], keep=["neutral", "sad"], merge={"calm": "neutral"}) == [
        "neutral", "sad", None]
    assert ordered(["sad", "neutral", "zzz", "angry"]) == ["neutral", "sad", "angry", "zzz"]
    assert np.all([canonical(e) == e for e in ordered(["boredom", "calm"])])


def test_nemo_metadata_table_is_optional(tmp_path):
    _touch(tmp_path, ["samples/WR0_happiness_64.wav", "samples/notes_about_it.wav"])
    (tmp_path / "data.tsv").write_text("file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage\n"
                                       "WR0_happiness_64.wav\thappiness\tUcho.\tucho\t  WR0\tmale\t23\n")
    [u] = load_corpus(tmp_path, corpus="nemo")  # a file outside the naming scheme is not read
    assert (u.label, u.meta) == ("happy", {"sentence": "Ucho.", "gender": "male", "age": "23"})
    (tmp_path / "data.tsv").unlink()
    assert load_corpus(tmp_path, corpus="nemo")[0].meta == {}


def test_ased_label_comes_from_its_folder(tmp_path):
    _touch(tmp_path, ["03Happy/h3-02-01-02-11.wav", "Extra/h3-02-01-02-11.wav"])
    [u] = load_corpus(tmp_path, corpus="ased")
    assert (u.label, u.speaker, u.meta) == ("happy", "ased:11", {"gender": "male", "sentence": "02",
                                                                 "repetition": "01"})
