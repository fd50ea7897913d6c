"""`read_video` never depends on the frame size: every width 8..256 px and odd sizes, mp4/avi/webm, read exactly as
decord's own frame-by-frame read. decord2 3.4's `get_batch` fails at CPU-dependent widths (here 8, 16, 24, 32, 48,
96, 144) and its `vr[i]` returns those frames as (H, W, stride/W) arrays; the reader falls back to PyAV then."""
import types
import numpy as np, pytest
import spamo.video as video
from spamo.video import VideoError, load_decord, read_video
from spamo.testing import write_video

# codec and pixel format per container; libx264 cannot encode odd sizes in yuv420p, so odd sizes use yuv444p there
# (mpeg4, mjpeg and libvpx-vp9 encode odd sizes in 4:2:0 and are kept at it: there PyAV's plain rgb24 conversion
# differs from decord's, so these sizes check that the fallback converts as decord does)
FORMATS = {'mp4': ('mp4', 'libx264', 'yuv420p', 'yuv444p'), 'avi-mpeg4': ('avi', 'mpeg4', 'yuv420p', 'yuv420p'),
           'avi-mjpeg': ('avi', 'mjpeg', 'yuvj420p', 'yuvj420p'), 'webm': ('webm', 'libvpx-vp9', 'yuv420p', 'yuv420p')}
SIZES = [(24, w) for w in range(8, 257, 8)]                                       # (H, W)
ODD = [(47, 33), (260, 210), (33, 47)]                                            # 33x47, 210x260, 47x33 (WxH)
RESIZE = [(16, 16), (24, 32), (13, 17), (30, 144), (24, 40), (20, 8), (48, 96)]  # size= asked, in turn


def decord_frames(path, hw=None) -> np.ndarray:
    """decord's frame-by-frame read, `decord.VideoReader(path)[i].asnumpy()` (at `hw` through its scaler). Where decord
    returns a frame as (H, W, stride/W), each row holds the W*3 bytes of the frame, then padding: those bytes are kept."""
    vr = load_decord().VideoReader(str(path), **(dict(width=hw[1], height=hw[0]) if hw else {}))
    out = []
    for i in range(len(vr)):
        a = vr[i].asnumpy()
        h, w, c = a.shape
        if c != 3: assert c > 3, a.shape; a = a.reshape(h, w * c)[:, :w * 3].reshape(h, w, 3)
        out.append(a)
    return np.stack(out)


def noise(hw, n=4, seed=0) -> np.ndarray: return np.random.default_rng(seed).integers(0, 256, (n, *hw, 3), np.uint8)


@pytest.mark.parametrize('fmt', FORMATS)
def test_every_size_reads_as_decord_frame_by_frame(fmt, tmp_path):
    ext, codec, pix, pix_odd = FORMATS[fmt]
    for k, hw in enumerate(SIZES + ODD):
        odd = hw[0] % 2 or hw[1] % 2
        path = write_video(tmp_path/f'{hw[1]}x{hw[0]}.{ext}', noise(hw, seed=k), codec, pix_odd if odd else pix)
        v, fps = read_video(path)
        ref = decord_frames(path)
        assert v.shape == (4, *hw, 3) and v.dtype == np.uint8 and fps == 25.0, (fmt, hw)
        assert np.array_equal(v, ref), (fmt, hw)
        size = RESIZE[k % len(RESIZE)]
        v = read_video(path, size=size)[0]
        assert v.shape == (4, *size, 3), (fmt, hw, size)
        assert np.array_equal(v, decord_frames(path, size)), (fmt, hw, size)   # decord's scaler, whichever reader ran


def test_windows_and_chunks_at_a_failing_width(tmp_path):
    path = str(write_video(tmp_path/'w16.mp4', noise((24, 16), n=9), 'libx264', 'yuv420p'))
    ref = decord_frames(path)
    for chunk in (1, 2, 32):
        v, _ = video._read_container(path, 0.04, 0.32, 2, None, path, chunk=chunk)  # frames 1, 3, 5, 7
        assert np.array_equal(v, ref[1:8:2]), chunk
    assert np.array_equal(read_video(path, start=0.2)[0], ref[5:])


def test_batch_failing_after_the_first_chunk(tmp_path, monkeypatch):
    "A decord batch read that fails at a later chunk (not only the first) falls back too, with the same frames."
    path = str(write_video(tmp_path/'w40.mp4', noise((24, 40), n=7), 'libx264', 'yuv420p'))
    decord, calls = load_decord(), []
    class Flaky:
        def __init__(self, *a, **kw): self.vr = decord.VideoReader(*a, **kw)
        def __len__(self): return len(self.vr)
        def __getitem__(self, i): return self.vr[i]
        def get_avg_fps(self): return self.vr.get_avg_fps()
        def get_batch(self, ids):
            calls.append(list(ids))
            if len(calls) > 1: raise RuntimeError('Check failed: from_size == to_size')
            return self.vr.get_batch(ids)
    monkeypatch.setattr(video, 'load_decord', lambda: types.SimpleNamespace(VideoReader=Flaky, cpu=decord.cpu))
    v, _ = video._read_container(path, None, None, 1, None, path, chunk=3)
    assert calls == [[0, 1, 2], [3, 4, 5]]   # the batch way is dropped once it failed
    assert np.array_equal(v, decord_frames(path))


def test_unreadable_files_still_name_the_file(tmp_path):
    good = write_video(tmp_path/'good.mp4', noise((24, 16), n=5), 'libx264', 'yuv420p').read_bytes()
    (tmp_path/'cut.mp4').write_bytes(good[:len(good) // 2])
    (tmp_path/'junk.webm').write_bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes())
    for name in ('cut.mp4', 'junk.webm'):
        with pytest.raises(VideoError, match=f"sample 's1' .*{name}"): read_video(tmp_path/name, sample_id='s1')
    with pytest.raises(FileNotFoundError, match='missing.avi'): read_video(tmp_path/'missing.avi')
