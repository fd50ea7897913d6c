"""spamo.data on the real annotation files and clips (shared_data), and on hostile inputs (tmp_path)."""
import csv, gzip, pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spamo.data import (Sample, VideoError, load_decord, load_csl_daily, load_dataset, load_how2sign, load_manifest,
                        load_phoenix14t, read_csl_labels, read_sample, read_samples, read_video)
from spamo.testing import write_avi


# ---------------------------------------------------------------- PHOENIX14T
def test_phoenix14t_reconstructed_counts_and_first_dev_row(shared_data):
    root = shared_data/'phoenix14t/reconstructed_corpus_csv'
    counts = {s: len(load_phoenix14t(root, s)) for s in ('train', 'dev', 'test')}
    assert counts == {'train': 7096, 'dev': 519, 'test': 642}
    s = load_dataset('phoenix14t', root, 'val')[0]
    assert (s.id, s.text, s.gloss, s.signer, s.language, s.split) == (
        '11August_2010_Wednesday_tagesschau-2', 'tiefer luftdruck bestimmt in den nächsten tagen unser wetter',
        'DRUCK TIEF KOMMEN', 'Signer08', 'de', 'dev')
    assert s.video.endswith('11August_2010_Wednesday_tagesschau-2/1/*.png')


def test_phoenix14t_official_crlf_test_file_matches_reconstruction(shared_data):
    official = load_phoenix14t(shared_data/'phoenix14t/official_corpus_csv_partial', 'test')
    rebuilt = load_phoenix14t(shared_data/'phoenix14t/reconstructed_corpus_csv', 'test')
    assert len(official) == 642
    assert [(s.id, s.text, s.gloss, s.signer) for s in official] == [(s.id, s.text, s.gloss, s.signer) for s in rebuilt]
    assert not any(s.text.endswith('\r') or s.gloss.endswith('\r') for s in official)


def test_phoenix14t_layout_with_frames(tmp_path):
    man = tmp_path/'PHOENIX-2014-T/annotations/manual'
    man.mkdir(parents=True)
    (man/'PHOENIX-2014-T.train.corpus.csv').write_text(
        'name|video|start|end|speaker|orth|translation\nc1|c1/1/*.png|-1|-1|Signer03|A B|ein satz\n')
    d = tmp_path/'PHOENIX-2014-T/features/fullFrame-210x260px/train/c1/1'
    d.mkdir(parents=True)
    for i in range(1, 12): Image.new('RGB', (26, 21), (20 * i, 0, 0)).save(d/f'images{i:04d}.png')
    s, = load_phoenix14t(tmp_path, 'train')   # root = the parent of PHOENIX-2014-T
    v, fps = read_sample(s)
    assert v.shape == (11, 21, 26, 3) and fps == 25.0
    assert list(v[:, 0, 0, 0]) == [20 * i for i in range(1, 12)]


# ---------------------------------------------------------------- How2Sign
def test_how2sign_annotation_counts_and_quotes(shared_data):
    ann = shared_data/'how2sign/annotations'
    val, test = load_how2sign(ann, 'dev'), load_how2sign(ann, 'test')
    assert (len(val), len(test)) == (1741, 2357)
    assert {s.language for s in val + test} == {'en'} and {s.split for s in val} == {'dev'}
    by_id = {s.id: s.text for s in test}
    assert by_id['-g0iPSnQt6w_5-1-rgb_front'] == 'You can\'t get into the middle of the dive and just decide, "You know what?'
    assert {s.id: s.text for s in val}['CFRh_KOT9nY_4-5-rgb_front'].count('"free mobile workbench plans"') == 1
    assert not any('""' in s.text for s in val + test)


def _clip_rows(shared_data):
    with open(shared_data/'how2sign/clips/manifest.tsv', newline='', encoding='utf-8') as f:
        return list(csv.DictReader(f, delimiter='\t'))


def test_how2sign_all_clips_decode_with_container_counts_and_fps(shared_data):
    decord = load_decord()
    rows = _clip_rows(shared_data)
    assert len(rows) == 48
    samples = {s.id: s for split in ('dev', 'test') for s in load_how2sign(
        shared_data/'how2sign/annotations', split, clips_dir=shared_data/'how2sign/clips')}
    for r in rows:
        s = samples[Path(r['file']).stem]
        assert Path(s.video) == shared_data/'how2sign/clips'/r['split']/r['file']
        assert s.text == r['SENTENCE']
        n = len(decord.VideoReader(s.video))   # the container's frame count
        v, fps = read_sample(s, size=(72, 128))
        assert v.shape == (n, 72, 128, 3) and v.dtype == np.uint8, s.id
        assert fps == pytest.approx({'test': 50.0, 'val': 24.0}[r['split']], abs=1e-3), s.id
        assert v.std() > 10, s.id   # real pictures, not a blank buffer


def test_how2sign_time_window(shared_data):
    s = next(s for s in load_how2sign(shared_data/'how2sign/annotations', 'test', clips_dir=shared_data/'how2sign/clips')
             if s.id == '-fZc293MpJk_2-1-rgb_front')   # a 50 fps test clip, several seconds long
    full, fps = read_sample(s, size=(36, 64))
    assert fps == pytest.approx(50.0) and len(full) > 150
    win, _ = read_video(s.video, start=1.0, end=2.0, size=(36, 64))
    assert len(win) == 50
    assert np.array_equal(win, full[50:100])
    sub, sub_fps = read_video(s.video, start=1.0, end=2.0, every=5, size=(36, 64))
    assert len(sub) == 10 and sub_fps == pytest.approx(10.0)
    assert np.array_equal(sub, full[50:100:5])


# ---------------------------------------------------------------- CSL-Daily
def test_csl_daily_tsv_and_pickle_labels(shared_data):
    lab = shared_data/'csl_daily/sltbaselines_labels'
    for split in ('train', 'dev', 'test'):
        tsv = lab/f'csl_daily_sltbaselines.{split}.tsv'
        n_rows = len(tsv.read_text(encoding='utf-8').splitlines()) - 1   # minus the header
        from_tsv = load_csl_daily(lab, split)
        from_pkl = load_csl_daily(lab, split, labels=lab/f'labels.{split}')
        assert len(from_tsv) == n_rows == len(from_pkl)
        assert {s.language for s in from_tsv} == {'zh'}
        assert [(s.id, s.text, s.gloss, s.extra['num_frames']) for s in from_tsv] == \
               [(s.id, s.text, s.gloss, s.extra['num_frames']) for s in from_pkl]
    assert (len(load_csl_daily(lab, 'dev')), len(load_csl_daily(lab, 'test'))) == (1077, 1176)
    s = load_csl_daily(lab, 'dev')[0]
    assert (s.id, s.text, s.gloss) == ('S000020_P0000_T00', '他今年四岁。', '他 今天 年龄 4')


def test_csl_daily_official_format_and_unsafe_pickle(tmp_path):
    lab = tmp_path/'sentence_label'
    lab.mkdir()
    info = [dict(name=f'S{i}', length=9, label_gloss=['我'], label_char=['我', '们'], signer=i) for i in range(5)]
    (lab/'csl2020ct_v2.pkl').write_bytes(pickle.dumps({'info': info, 'char_map': ['我', '们']}))
    (lab/'split_1.txt').write_text('Name|Split\nS0|train\nS1|dev\nS2|test\nS3|train\nS4|dev\n')
    assert [s.id for s in load_csl_daily(tmp_path, 'train')] == ['S0', 'S3']
    dev = load_csl_daily(tmp_path, 'dev')
    assert [(s.id, s.text, s.signer, s.video) for s in dev] == [
        (f'S{i}', '我们', str(i), str(tmp_path/'sentence/frames_512x512'/f'S{i}')) for i in (1, 4)]

    class Evil:
        def __reduce__(self): return (print, ('pwned',))
    (tmp_path/'labels.test').write_bytes(gzip.compress(pickle.dumps({'x': Evil()})))
    with pytest.raises(pickle.UnpicklingError, match='refusing'):
        read_csl_labels(tmp_path/'labels.test')


# ---------------------------------------------------------------- manifests
def test_manifest_csv_and_jsonl(tmp_path):
    write_avi(tmp_path/'a.avi', np.zeros((20, 32, 32, 3), np.uint8), fps=10)
    (tmp_path/'m.csv').write_text('id,video,text,language,start,end,split\na,a.avi,hallo,de,0.5,1.5,train\n')
    s, = load_dataset('manifest', tmp_path/'m.csv', 'train')
    assert (s.video, s.start, s.end) == (str(tmp_path/'a.avi'), 0.5, 1.5)
    assert len(read_sample(s)[0]) == 10
    (tmp_path/'m.jsonl').write_text('{"id": "a", "video": "a.avi", "text": "hi", "language": "en"}\n'
                                    '{"id": "a", "video": "a.avi", "text": "hi", "language": "en"}\n')
    with pytest.raises(ValueError, match=r'm\.jsonl:2: duplicate id'):
        load_manifest(tmp_path/'m.jsonl')


# ---------------------------------------------------------------- bad input
@pytest.fixture
def clip(tmp_path):
    x = np.zeros((12, 24, 40, 3), np.uint8)
    x[:, :, :, 1] = (20 * np.arange(12))[:, None, None]
    return write_avi(tmp_path/'good.avi', x, fps=12)


def test_missing_file_names_id_and_path(tmp_path):
    s = Sample('clip-42', str(tmp_path/'nowhere/clip.mp4'), 'x', 'en', 'test')
    with pytest.raises(FileNotFoundError) as e:
        read_sample(s)
    assert 'clip-42' in str(e.value) and str(tmp_path/'nowhere/clip.mp4') in str(e.value)


def test_undecodable_and_empty_files(tmp_path):
    (tmp_path/'x.mp4').write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (tmp_path/'e.mp4').write_bytes(b'')
    for name in ('x.mp4', 'e.mp4'):
        with pytest.raises(VideoError) as e:
            read_sample(Sample(f'id-{name}', str(tmp_path/name), 'x', 'en', 'test'))
        assert f'id-{name}' in str(e.value) and str(tmp_path/name) in str(e.value)


def test_empty_frame_folder_and_bad_frame(tmp_path):
    (tmp_path/'empty').mkdir()
    with pytest.raises(VideoError, match="sample 'f1'.*no frames"):
        read_sample(Sample('f1', str(tmp_path/'empty'), 'x', 'de', 'test'))
    (tmp_path/'broken').mkdir()
    Image.new('RGB', (8, 8)).save(tmp_path/'broken/images1.png')
    (tmp_path/'broken/images2.png').write_bytes(b'not a png')
    with pytest.raises(VideoError, match='images2.png'):
        read_video(tmp_path/'broken')


def test_frame_folder_sorted_numerically(tmp_path):
    for i in (10, 2, 1, 11, 9):
        Image.new('RGB', (4, 4), (i * 10, 0, 0)).save(tmp_path/f'images{i}.png')
    v, fps = read_video(tmp_path, fps=5)
    assert list(v[:, 0, 0, 0]) == [10, 20, 90, 100, 110] and fps == 5
    assert list(read_video(str(tmp_path/'*.png'), start=0.4, fps=5)[0][:, 0, 0, 0]) == [90, 100, 110]


def test_malformed_annotation_rows(tmp_path):
    (tmp_path/'PHOENIX-2014-T.dev.corpus.csv').write_text(
        'name|video|start|end|speaker|orth|translation\na|a/1/*.png|-1|-1|S|G|t\nb|b/1/*.png|-1|-1|S|G\n')
    with pytest.raises(ValueError, match=r'PHOENIX-2014-T\.dev\.corpus\.csv:3:'):
        load_phoenix14t(tmp_path, 'dev')
    head = 'VIDEO_ID\tVIDEO_NAME\tSENTENCE_ID\tSENTENCE_NAME\tSTART_REALIGNED\tEND_REALIGNED\tSENTENCE\r\n'
    (tmp_path/'how2sign_realigned_test.csv').write_text(head + 'v\tv-1\tv_0\tv_0-1\t1.0\t2.0\tfine.\r\n'
                                                        'v\tv-1\tv_1\tv_1-1\t2.0\tno end column.\r\n', newline='')
    with pytest.raises(ValueError, match=r'how2sign_realigned_test\.csv:3:'):
        load_how2sign(tmp_path, 'test')
    (tmp_path/'how2sign_realigned_val.csv').write_text(head.replace('\tSENTENCE\r', '\r'), newline='')
    with pytest.raises(ValueError, match='lacks SENTENCE'):
        load_how2sign(tmp_path, 'val')


def test_skip_reports_bad_ones_and_keeps_good_ones(tmp_path, clip):
    (tmp_path/'x.mp4').write_bytes(b'\x00garbage' * 100)
    samples = [Sample('ok1', str(clip), 'a', 'en', 'test'), Sample('bad', str(tmp_path/'x.mp4'), 'b', 'en', 'test'),
               Sample('gone', str(tmp_path/'gone.mp4'), 'c', 'en', 'test'), Sample('ok2', str(clip), 'd', 'en', 'test', start=0.5)]
    with pytest.raises(VideoError, match="'bad'"):
        read_samples(samples)
    items, report = read_samples(samples, size=(12, 20), on_error='skip')
    assert [(s.id, len(v), fps) for s, v, fps in items] == [('ok1', 12, 12.0), ('ok2', 6, 12.0)]
    assert [(i, p) for i, p, _ in report] == [('bad', str(tmp_path/'x.mp4')), ('gone', str(tmp_path/'gone.mp4'))]
    assert 'not found' in report[1][2]


def test_unknown_dataset_and_split(tmp_path):
    with pytest.raises(ValueError, match="known: 'csl_daily', 'how2sign', 'manifest', 'phoenix14t'; or an alias"):
        load_dataset('wlasl', tmp_path, 'test')
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        load_dataset('phoenix14t', tmp_path, 'holdout')
