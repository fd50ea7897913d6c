"""SynthSign: reproducible files, minimal pairs that differ where they should, the PHOENIX14T layout read back, the CLI."""
import hashlib, json
from pathlib import Path
import numpy as np
import pytest
from spamo.synth import (FRAMES_DIR, MINIMAL_PAIRS, PHOENIX_HEADER, SPLITS, make_synthsign, render_signs, synth_cli,
                         sample_video, render, draw_look, _grid, _window)

ANNOTATIONS = [f'annotations/manual/PHOENIX-2014-T.{s}.corpus.csv' for s in SPLITS] + [f'{s}.jsonl' for s in SPLITS] + ['signs.json']
TINY = dict(n_train=6, n_dev=2, n_test=2, size=32, workers=1)

def _digest(root: Path, pattern='**/*.png') -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.glob(pattern))}

def _jsonl(root, split): return [json.loads(l) for l in (Path(root) / f'{split}.jsonl').read_text(encoding='utf-8').splitlines()]

@pytest.fixture(scope='module')
def tiny(tmp_path_factory) -> Path:
    return make_synthsign(tmp_path_factory.mktemp('synth') / 'a', seed=0, **TINY)

def test_same_seed_same_bytes(tiny, tmp_path):
    again = make_synthsign(tmp_path / 'b', seed=0, **TINY)
    for f in ANNOTATIONS: assert (tiny / f).read_bytes() == (again / f).read_bytes(), f
    frames = _digest(tiny)
    assert len(frames) == sum(r['n_frames'] for s in SPLITS for r in _jsonl(tiny, s)) and frames == _digest(again)
    other = make_synthsign(tmp_path / 'c', seed=1, frames=False, **TINY)
    for s in SPLITS: assert (tiny / ANNOTATIONS[SPLITS.index(s)]).read_bytes() != (other / ANNOTATIONS[SPLITS.index(s)]).read_bytes()

def test_sizes_and_frames_flag_do_not_shift_videos(tiny, tmp_path):
    more = make_synthsign(tmp_path / 'more', n_train=9, n_dev=0, n_test=3, size=32, frames=False)
    assert _jsonl(more, 'train')[:6] == _jsonl(tiny, 'train') and _jsonl(more, 'test')[:2] == _jsonl(tiny, 'test')
    assert _jsonl(more, 'dev') == [] and not (more / FRAMES_DIR).exists()
    same = make_synthsign(tmp_path / 'ann', frames=False, **TINY)
    for f in ANNOTATIONS[:-1]: assert (same / f).read_bytes() == (tiny / f).read_bytes(), f

def test_counts_layout_and_spans(tiny):
    for split, n in [('train', 6), ('dev', 2), ('test', 2)]:
        lines = (tiny / f'annotations/manual/PHOENIX-2014-T.{split}.corpus.csv').read_text(encoding='utf-8').splitlines()
        assert lines[0] == PHOENIX_HEADER == 'name|video|start|end|speaker|orth|translation' and len(lines) == n + 1
        for line, r in zip(lines[1:], _jsonl(tiny, split)):
            name, video, start, end, speaker, orth, text = line.split('|')
            assert (name, video, orth.split(), text, speaker) == (r['id'], f"{r['id']}/1/*.png", r['glosses'], r['text'], r['signer'])
            assert text == text.lower() and not text.endswith('.') and orth == orth.upper()
            files = sorted((tiny / FRAMES_DIR / split / name / '1').glob('*.png'))
            assert [f.name for f in files] == [f'images{i:04d}.png' for i in range(1, r['n_frames'] + 1)]
            spans = [(s['start'], s['end']) for s in r['signs']]
            assert 2 <= len(spans) <= 6 and 0 < spans[0][0] and spans[-1][1] < r['n_frames']
            assert all(8 <= b - a <= 12 for a, b in spans) and all(b < a2 for (_, b), (a2, _) in zip(spans, spans[1:]))

def test_minimal_pairs_differ_only_in_their_attribute(tiny):
    lex = json.loads((tiny / 'signs.json').read_text(encoding='utf-8'))
    signs = {s['gloss']: s for s in lex['signs']}
    attrs = ['handshape', 'colour', 'location', 'motion', 'face']
    pairs = [(p['a'], p['b'], p['attribute']) for p in lex['minimal_pairs']]
    assert pairs == [tuple(p) for p in MINIMAL_PAIRS]
    assert ('STUHL', 'SITZEN', 'motion') in pairs and ('KALT', 'WINTER', 'face') in pairs
    assert {k for *_, k in pairs} >= {'motion', 'handshape', 'face'}
    for a, b, k in pairs: assert [x for x in attrs if signs[a][x] != signs[b][x]] == [k], (a, b)
    assert (signs['STUHL']['motion'], signs['SITZEN']['motion']) == ('tap', 'down')
    assert (signs['KALT']['face'], signs['WINTER']['face']) == ('grimace', 'neutral') and signs['KALT']['motion'] == 'shake'
    for r in _jsonl(tiny, 'train'):  # the per-video descriptions agree with the lexicon
        for s in r['signs']: assert {k: s[k] for k in attrs} == {k: signs[s['gloss']][k] for k in attrs}

def _moved(frames, start, t, thresh=40):
    "Pixels that changed by more than the noise between the sign's first frame and frame t."
    return int((np.abs(frames[t].astype(int) - frames[start].astype(int)).max(-1) > thresh).sum())

def test_motion_pair_frames():
    (a, (sa,)), (b, _) = render_signs(['STUHL'], seed=7), render_signs(['SITZEN'], seed=7)
    s, e = sa
    assert (a[s] == b[s]).all()  # same first frame of the sign
    assert _moved(a, s, e - 1) < 5 < 40 < _moved(b, s, e - 1)  # the taps come back; sitting ends lower
    tap = [_moved(a, s, t) for t in range(s, e)]
    assert sum(x > 20 for x in tap) >= 3 and sum(x < 5 for x in tap) >= 3  # up and down, repeatedly

def test_face_and_handshape_pair_frames():
    look = draw_look(np.random.default_rng(11), 0); xs, ys, _ = _grid(64, look)  # the look render_signs draws first
    rows, cols = _window(xs, ys, 0.38, 0.62, 0.1, 0.33)
    (a, _), (b, _) = render_signs(['KALT'], seed=11), render_signs(['WINTER'], seed=11)
    d = np.abs(a.astype(int) - b.astype(int)).max(-1) > 0
    assert d[:, rows, cols].sum() > 100 and d.sum() == d[:, rows, cols].sum()  # the mouth region, nothing else
    (a, _), (b, _) = render_signs(['MONTAG'], seed=11), render_signs(['DIENSTAG'], seed=11)
    d = np.abs(a.astype(int) - b.astype(int)).max(-1) > 0
    assert d.sum() > 100 and d[:, 40:].sum() == 0 and d[:, :, :20].sum() == 0  # near the hand (at the cheek) only

def test_loads_with_spamo_data(tiny):
    data = pytest.importorskip('spamo.data', reason='spamo.data (nbs/00_data.ipynb) not exported yet')
    if not hasattr(data, 'load_phoenix14t'): pytest.skip('spamo.data.load_phoenix14t not written yet')
    for split in SPLITS:
        samples, recs = data.load_phoenix14t(tiny, split), _jsonl(tiny, split)
        assert [(s.id, s.text, s.gloss, s.language, s.split) for s in samples] == \
               [(r['id'], r['text'], ' '.join(r['glosses']), 'de', split) for r in recs]
    frames, _ = data.read_sample(data.load_dataset('phoenix14t', tiny, 'dev')[1])
    assert (frames == render(sample_video(0, 'dev', 1), 32)).all()

def test_mp4_and_manifest(tmp_path):
    pytest.importorskip('av', reason='mp4 writing needs PyAV (pip install av)')
    data = pytest.importorskip('spamo.data', reason='spamo.data (nbs/00_data.ipynb) not exported yet')
    root = make_synthsign(tmp_path / 'm', n_train=3, n_dev=1, n_test=1, size=32, mp4=True, frames=False)
    assert not (root / FRAMES_DIR).exists()
    header = (root / 'manifest.csv').read_text(encoding='utf-8').splitlines()[0]
    assert header == 'id,video,text,language,split,gloss'
    samples = data.load_manifest(root / 'manifest.csv')
    assert [s.split for s in samples] == ['train'] * 3 + ['dev', 'test'] and all(s.language == 'de' for s in samples)
    frames, fps = data.read_sample(samples[3])
    ref = render(sample_video(0, 'dev', 0), 32)
    assert frames.shape == ref.shape and fps == 25 and np.abs(frames.astype(int) - ref).mean() < 12  # lossy, close

def test_two_workers_write_the_same_frames(tmp_path):
    one = make_synthsign(tmp_path / 'one', n_train=6, n_dev=0, n_test=0, size=16, workers=1)
    two = make_synthsign(tmp_path / 'two', n_train=6, n_dev=0, n_test=0, size=16, workers=2)
    assert _digest(one) == _digest(two) and len(_digest(one)) > 6 * 19

def test_rewrite_removes_stale_frames(tmp_path):
    root = make_synthsign(tmp_path / 'r', n_train=1, n_dev=0, n_test=0, size=16, seed=0)
    d = root / FRAMES_DIR / 'train' / 'synthsign-train-00000' / '1'
    (d / 'images0999.png').write_bytes(b'old')
    make_synthsign(root, n_train=1, n_dev=0, n_test=0, size=16, seed=3)
    assert len(list(d.glob('*.png'))) == _jsonl(root, 'train')[0]['n_frames']

def test_cli(tmp_path, capsys):
    assert synth_cli([str(tmp_path / 'cli'), '--n-train', '2', '--n-dev', '1', '--n-test', '1', '--no-frames', '--seed', '4']) == 0
    assert len(_jsonl(tmp_path / 'cli', 'train')) == 2 and json.loads((tmp_path / 'cli' / 'signs.json').read_text())['settings']['seed'] == 4
    assert 'SynthSign' in capsys.readouterr().out
    blocker = tmp_path / 'file.txt'; blocker.write_text('x')
    assert synth_cli([str(blocker), '--n-train', '1', '--no-frames']) == 1
    assert 'file.txt' in capsys.readouterr().err
    with pytest.raises(SystemExit) as e: synth_cli(['--help'])
    assert e.value.code == 0 and '--n-train' in capsys.readouterr().out
