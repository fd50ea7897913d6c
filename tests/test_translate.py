"""`spamo translate` on raw videos: real How2Sign clips, hostile files, features equal to the run's feature store, determinism."""
import json, os
from types import SimpleNamespace
from pathlib import Path
import numpy as np, pytest, torch
from spamo.data import load_dataset, read_video
from spamo.testing import write_avi
from spamo.store import FeatureStore
from spamo.cli import main
from spamo.translate import Translator, translate_cli, probe, decode_size
from spamo.testing import smoke_run

CLIP = 'how2sign/clips/test/-fZc293MpJk_6-1-rgb_front.mp4'  # 187 frames, 1280x720 at 50 fps: three chunks of 64


@pytest.fixture(scope='session')
def run(tmp_path_factory) -> Path:
    "A trained run: $SPAMO_DEMO_RUN (a `spamo demo` folder or a run directory), else a smoke run trained here."
    if os.environ.get('SPAMO_DEMO_RUN'):
        d = Path(os.environ['SPAMO_DEMO_RUN'])
        return d / 'spamo' if (d / 'spamo' / 'config.json').exists() else d
    return smoke_run()  # 24 SynthSign videos at 32x32, 6 steps; shared with the notebooks


@pytest.fixture(scope='session')
def translator(run) -> Translator: return Translator.from_run(run, device='cpu', progress=False)


@pytest.fixture(scope='session')
def train_samples(translator):
    c = translator.cfg.data
    return load_dataset(c.dataset, c.data_root, c.train_split)


def test_cli_how2sign_clip(shared_data, run, capsys):
    clip = shared_data / CLIP
    assert translate_cli([str(run), str(clip), '--no-progress']) == 0
    out = capsys.readouterr().out
    print(out)
    lines = out.splitlines()
    assert lines[0] == str(clip)
    assert len(lines[1].split()) >= 1                                   # the sentence
    assert lines[2].strip().startswith('187 frames at 50 fps')
    for stage in ('decode', 'spatial', 'motion', 'adapter+llm'): assert f'{stage} ' in lines[2]


def test_how2sign_chunks_equal_whole_video(shared_data, translator):
    "Decoding resized in chunks gives the features of the whole video decoded at once."
    clip = shared_data / CLIP
    n, fps, hw = probe(clip)
    assert (n, fps, hw) == (187, 50.0, (720, 1280))
    size = decode_size(hw, translator.side)
    assert min(size) == translator.side < 720
    f = translator.features(clip)
    x = read_video(clip, size=size)[0]
    dt = getattr(torch, translator.settings['dtype'])
    torch.testing.assert_close(f['spatial'], translator.spatial.encode(x).to(dt).float(), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(f['motion'], translator.motion.encode(x).to(dt).float(), rtol=1e-3, atol=1e-3)


def test_cli_bad_files(run, train_samples, tmp_path, capsys):
    "Good videos are translated, each bad one is named on stderr, the exit status is non-zero (through `spamo.cli.main`)."
    (tmp_path / 'corrupt.mp4').write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (tmp_path / 'empty.webm').write_bytes(b'')
    good = write_avi(tmp_path / 'good.avi', read_video(train_samples[0].video)[0])
    status = main(['translate', str(run), str(good), str(tmp_path / 'corrupt.mp4'), str(tmp_path / 'empty.webm'), '--json', '--no-progress'])
    r = SimpleNamespace(returncode=status, **dict(zip(('stdout', 'stderr'), capsys.readouterr())))
    assert r.returncode == 1, r.stderr
    assert 'corrupt.mp4' in r.stderr and 'empty.webm' in r.stderr and 'empty file' in r.stderr
    got = json.loads(r.stdout)
    assert [g['error'] is None for g in got] == [True, False, False]
    assert got[0]['text'] and got[0]['frames'] == len(read_video(train_samples[0].video)[0])
    assert set(got[0]['seconds']) == {'decode', 'spatial', 'motion', 'adapter+llm'}


def test_cli_missing_file(run, tmp_path, capsys):
    assert translate_cli([str(run), str(tmp_path / 'missing.mp4'), '--no-progress']) == 1
    out, err = capsys.readouterr()
    assert 'missing.mp4' in err and out == ''
    assert translate_cli([str(tmp_path / 'no-run'), str(tmp_path / 'missing.mp4')]) == 2
    assert 'no-run' in capsys.readouterr().err


def test_features_equal_feature_store(translator, train_samples):
    "The rebuilt encoders compute the stored training features (up to the store's float16 rounding)."
    store = FeatureStore(translator.cfg.data.features)
    assert translator.settings == store.settings
    a, b = train_samples[0], train_samples[1]
    fa = translator.features(a.video)
    for k in ('spatial', 'motion'):
        torch.testing.assert_close(fa[k], store[a.id][k], rtol=1e-3, atol=1e-3)
    other = store[b.id]['spatial']                                      # the check can fail: another video differs
    assert other.shape != fa['spatial'].shape or (other - fa['spatial']).abs().max() > 1e-2


def test_deterministic_and_checkpoint_folder(run, translator, train_samples):
    v = train_samples[0].video
    t1, t2 = translator([v])[0], translator([v, train_samples[1].video])[0]
    assert t1.error is None and t1.text and t1.text == t2.text
    alone = Translator.from_run(Path(run) / 'checkpoints' / 'best', device='cpu', progress=False)
    assert alone([v])[0].text == t1.text
