"""The authors' frames (issue 22 item 2) and an aspect-kept decode size (issue 26 item 4).

`frames='official'` must give the pixels of the authors' `fullFrame-256x256px` (PHOENIX14T) and `CSL-Daily_256x256px`
folders. The VAC/CorrNet preprocessing wrote them (hulianyuyy/CorrNet preprocess/dataset_preprocess-T.py and
-CSL-Daily.py): `cv2.imread` -> `cv2.resize(img, (256, 256), interpolation=cv2.INTER_LANCZOS4)` -> `cv2.imwrite` under
the same name, and the authors' extraction read them with `PIL.Image.open(...).convert('RGB')`. The references below
repeat those calls with OpenCV; every comparison is exact (max abs difference 0).

`size='short:N'` scales the shorter side to N and keeps the aspect ratio (How2Sign: 1280x720), for decord, PyAV and
frame folders alike, while the int and (H, W) forms keep working."""
import types
from pathlib import Path
import cv2, numpy as np, pytest, torch
from PIL import Image
import spamo.video as video
from spamo.data import load_csl_daily, load_dataset, load_phoenix14t, read_sample
from spamo.motion import MotionEncoder
from spamo.spatial import SpatialEncoder
from spamo.store import FeatureStore, settings_diff, settings_hash, store_settings, write_record
from spamo.synth import make_synthsign
from spamo.testing import write_video
from spamo.video import frame_files, load_decord, parse_size, read_video, squash

PHOENIX = 'phoenix14t/sample_frames_slp_datasets'   # two real 210x260 PHOENIX14T frames (shared/data/SOURCES.md)


def theirs(path) -> np.ndarray:
    "One frame as the authors' preprocessing resized it: cv2.imread -> cv2.resize((256, 256), INTER_LANCZOS4) -> RGB."
    return cv2.cvtColor(cv2.resize(cv2.imread(str(path)), (256, 256), interpolation=cv2.INTER_LANCZOS4), cv2.COLOR_BGR2RGB)


def write_their_folder(files, out: Path):
    "Write `files` as the VAC/CorrNet preprocessing did: resized with INTER_LANCZOS4, cv2.imwrite under the same name."
    out.mkdir(parents=True, exist_ok=True)
    for f in files: cv2.imwrite(str(out/Path(f).name), cv2.resize(cv2.imread(str(f)), (256, 256), interpolation=cv2.INTER_LANCZOS4))


def as_read(files) -> np.ndarray:
    "Frames as the authors' extraction read their folder: PIL, converted to RGB."
    return np.stack([np.asarray(Image.open(f).convert('RGB')) for f in files])


def maxdiff(a, b) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.fixture
def phoenix_frames(shared_data):
    d = shared_data/PHOENIX
    if not d.is_dir(): pytest.skip(f'real PHOENIX14T frames not found at {d}')
    return frame_files(d)


def test_real_phoenix_frames_squashed_as_opencv(phoenix_frames):
    folder = phoenix_frames[0].parent
    assert read_video(folder)[0].shape == (2, 260, 210, 3)   # the released frames: 210 wide, 260 high
    v, fps = read_video(folder, frames='official')
    assert (v.shape, v.dtype, fps) == ((2, 256, 256, 3), np.uint8, 25.0)
    assert maxdiff(v, np.stack([theirs(f) for f in phoenix_frames])) == 0


def test_real_phoenix_through_the_loader(phoenix_frames, tmp_path):
    "The release's layout around the real frames: squashed in memory == their fullFrame-256x256px folder, as read."
    root = tmp_path/'PHOENIX-2014-T'
    (root/'annotations/manual').mkdir(parents=True)
    (root/'annotations/manual/PHOENIX-2014-T.dev.corpus.csv').write_text(
        'name|video|start|end|speaker|orth|translation\nclip|clip/1/*.png|-1|-1|Signer01|REGEN|es regnet\n')
    released = root/'features/fullFrame-210x260px/dev/clip/1'
    released.mkdir(parents=True)
    for f in phoenix_frames: (released/f.name).symlink_to(f)
    s = load_phoenix14t(root, 'dev', frames='official')[0]
    assert Path(s.video).parts[-5] == 'fullFrame-210x260px'   # no 256x256 folder: the released frames, squashed when read
    ours = read_sample(s, frames='official')[0]
    assert maxdiff(ours, np.stack([theirs(f) for f in phoenix_frames])) == 0
    write_their_folder(frame_files(released), root/'features/fullFrame-256x256px/dev/clip/1')
    s = load_dataset('phoenix14t', root, 'dev', frames='official')[0]
    assert Path(s.video).parts[-5] == 'fullFrame-256x256px'
    assert maxdiff(read_sample(s, frames='official')[0], ours) == 0   # their folder is read as it is
    assert maxdiff(as_read(frame_files(s.video)), ours) == 0          # as their extraction read it
    assert Path(load_phoenix14t(root, 'dev')[0].video).parts[-5] == 'fullFrame-210x260px'   # 'source' stays the default


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    "SynthSign in PHOENIX14T's layout (64x64 PNG frames) with mp4 copies: the squash is checked without the real data."
    return make_synthsign(tmp_path_factory.mktemp('synth')/'s', n_train=0, n_dev=2, n_test=0, size=64, mp4=True, workers=1)


def test_synthsign_frames_squashed_as_opencv(synth, tmp_path):
    samples = load_dataset('synthsign', synth, 'dev', frames='official')
    for s in samples:
        files = frame_files(s.video)
        v = read_sample(s, frames='official')[0]
        assert v.shape == (len(files), 256, 256, 3)
        assert maxdiff(v, np.stack([theirs(f) for f in files])) == 0
        assert maxdiff(read_sample(s, every=3, frames='official')[0], v[::3]) == 0
    files = frame_files(samples[0].video)   # their folder beside the released one: the loader takes it, same pixels
    write_their_folder(files, Path(str(files[0].parent).replace('fullFrame-210x260px', 'fullFrame-256x256px')))
    s = load_dataset('synthsign', synth, 'dev', frames='official')[0]
    assert 'fullFrame-256x256px' in s.video and maxdiff(read_sample(s, frames='official')[0], read_sample(samples[0], frames='official')[0]) == 0


def test_video_files_squashed_after_decoding(synth):
    mp4 = sorted(synth.rglob('*.mp4'))[0]
    src = read_video(mp4)[0]
    ref = np.stack([cv2.resize(f, (256, 256), interpolation=cv2.INTER_LANCZOS4) for f in src])
    assert maxdiff(read_video(mp4, frames='official')[0], ref) == 0
    assert maxdiff(read_video(mp4, start=0.2, every=2, frames='official')[0], ref[5::2]) == 0
    assert maxdiff(squash(src), ref) == 0


def test_csl_daily_jpegs_as_their_folder(synth, tmp_path):
    "CSL-Daily's frames are JPEGs, and their 256x256 copies were re-encoded by cv2.imwrite: the squash repeats the round trip."
    root = tmp_path/'CSL-Daily'
    (root/'sltbaselines_labels').mkdir(parents=True)
    (root/'sltbaselines_labels/labels.dev.tsv').write_text('name\tgloss\ttext\tlength\nS1\t你 好\t你好。\t3\n')
    src = root/'sentence/frames_512x512/S1'; src.mkdir(parents=True)
    for i, f in enumerate(frame_files(load_dataset('synthsign', synth, 'dev')[0].video)[:3]):
        Image.open(f).convert('RGB').resize((512, 512), Image.BICUBIC).save(src/f'{i:06d}.jpg', quality=90)
    s = load_csl_daily(root, 'dev', frames='official')[0]
    ours = read_sample(s, frames='official')[0]
    write_their_folder(frame_files(src), root.parent/'CSL-Daily_256x256px/S1')   # CorrNet's --target-path, beside CSL-Daily
    ref = as_read(frame_files(root.parent/'CSL-Daily_256x256px/S1'))
    assert maxdiff(ours, ref) == 0
    assert maxdiff(squash(read_sample(s)[0]), ref) > 0   # without the JPEG round trip the pixels differ
    s = load_csl_daily(root, 'dev', frames='official')[0]
    assert Path(s.video).parts[-2:] == ('CSL-Daily_256x256px', 'S1')
    assert maxdiff(read_sample(s, frames='official')[0], ref) == 0


def test_store_records_the_frames(tmp_path):
    se, me = SpatialEncoder.from_name('tiny', recipe='spamo'), MotionEncoder.from_name('tiny', recipe='spamo')
    src, off = store_settings(se, me), store_settings(se, me, frames='official')
    assert (src['frames'], off['frames'], settings_diff(src, off)) == ('source', 'official', ['frames'])
    FeatureStore(tmp_path/'s', src, create=True)
    with pytest.raises(ValueError, match=r"frames 'source' \(store\) != 'official' \(asked\)"): FeatureStore(tmp_path/'s', off)
    old = {k: v for k, v in src.items() if k != 'frames'}   # an index from before the key existed
    fs = FeatureStore(tmp_path/'old', old, create=True)
    write_record(fs.file('v'), 'v', torch.zeros(3, src['spatial_dim']), torch.zeros(1, src['motion_dim']), old)
    assert settings_hash(old) == settings_hash(src) != settings_hash(off)
    assert FeatureStore(tmp_path/'old', src).is_done('v')   # opens as 'source', its records valid
    with pytest.raises(ValueError, match='frames'): FeatureStore(tmp_path/'old', off)


def test_official_frames_refuse_a_size_and_unknown_values(synth):
    s = load_dataset('synthsign', synth, 'dev')[0]
    with pytest.raises(ValueError, match='leave size=None'): read_sample(s, size=224, frames='official')
    with pytest.raises(ValueError, match="'source', 'official'"): read_sample(s, frames='256x256')
    with pytest.raises(ValueError, match="'source', 'official'"): load_dataset('phoenix14t', synth, 'dev', frames='theirs')


# ---- aspect-kept decode size ----

def decord_frames(path, hw) -> np.ndarray:
    "decord's frame-by-frame read at `hw`, each row cut to its W*3 bytes where decord returns (H, W, stride/W)."
    vr = load_decord().VideoReader(str(path), width=hw[1], height=hw[0])
    out = []
    for i in range(len(vr)):
        a = vr[i].asnumpy(); h, w = a.shape[:2]
        out.append(a.reshape(h, -1)[:, :w * 3].reshape(h, w, 3))
    return np.stack(out)


def scene(n, h, w, seed=0) -> np.ndarray:
    "n frames of a smooth picture with a moving block, cheap to encode at 720p."
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], -1).astype(np.uint8)
    out = np.repeat(base[None], n, 0)
    for i in range(n): out[i, h // 3:h // 3 + h // 5, (i * w) // (2 * n):(i * w) // (2 * n) + w // 6] = (230, 180, 140)
    return out


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp('720p')
    return dict(land=write_video(d/'land.mp4', scene(4, 720, 1280)), port=write_video(d/'port.mp4', scene(3, 1280, 720, 1)))


@pytest.mark.parametrize('size,hw', [('short:224', (224, 398)), ('short:256', (256, 456))])
def test_short_side_keeps_the_aspect_with_decord(clips, size, hw):
    v, fps = read_video(clips['land'], size=size)
    assert (v.shape, fps) == ((4, *hw, 3), 25.0)
    assert np.array_equal(v, decord_frames(clips['land'], hw))   # decord's own scaler at that (H, W)


def test_short_side_portrait_and_the_old_forms(clips):
    assert read_video(clips['port'], size='short:224')[0].shape == (3, 398, 224, 3)
    assert read_video(clips['land'], size=64)[0].shape == (4, 64, 64, 3)            # an int: a square, as before
    assert read_video(clips['land'], size=(72, 128))[0].shape == (4, 72, 128, 3)    # (H, W), as before
    assert read_video(clips['land'])[0].shape == (4, 720, 1280, 3)


def test_short_side_with_pyav(clips, monkeypatch):
    "A file decord cannot open goes to PyAV, whose filter graph scales as decord does: same shape, same pixels."
    want = decord_frames(clips['land'], (224, 398))
    decord = load_decord()
    def refuse(*a, **kw): raise RuntimeError('decord cannot open it')
    monkeypatch.setattr(video, 'load_decord', lambda: types.SimpleNamespace(VideoReader=refuse, cpu=decord.cpu))
    v, fps = read_video(clips['land'], size='short:224')
    assert (v.shape, fps) == ((4, 224, 398, 3), 25.0)
    assert np.array_equal(v, want)


def test_short_side_on_a_frame_folder(tmp_path):
    x = scene(2, 720, 1280)
    for i, f in enumerate(x): Image.fromarray(f).save(tmp_path/f'images{i + 1:04d}.png')
    v, _ = read_video(tmp_path, size='short:224')
    assert v.shape == (2, 224, 398, 3)
    assert np.array_equal(v[1], np.asarray(Image.fromarray(x[1]).resize((398, 224), Image.BILINEAR)))


def test_size_forms_from_text():
    assert [parse_size(t) for t in ('256', '224,398', 'short:256', 'none')] == [256, (224, 398), 'short:256', None]
    for bad in ('short:0', 'short:x', '224x398', 'big'):
        with pytest.raises(ValueError, match="'short:N'"): parse_size(bad)
