"""Benchmark feature extraction: naive reference vs the optimized path, ViT-L/14 (S2) and VideoMAE-L at random weights.

Run: `python bench/bench_extract.py [--device cuda] [--frames 2] [--clips 1] [--tiny]`. Prints a table and a JSON line:
for fp32 and, where the CPU (or GPU) has it, bf16, side by side in one run, the throughput of the optimized path and
its fraction of the measured matmul peak of the dtype it ran in. `SPAMO_CPU_BF16=1|0` decides as on the other kind of CPU.
FLOPs are counted by hand (NOTES: torch's FlopCounter undercounts the fused attention paths on CPU):
2 x linear weights x tokens + 2 x patch-embedding weights x patches + 4 x layers x tokens^2 x width.

End to end (`--e2e`): decode + preprocess + encode + write of whole videos through `spamo.features.extract`, on
How2Sign-like synthetic H.264 videos (1280x720, 25 fps; `--video-dir DIR` reads real mp4s instead). It times, one after the
other: decoding alone (serially, `read_sample`), compute alone (encode + write of the already decoded frames) and the
real extraction, and prints the extraction's frames/s and the decode/compute overlap:
overlap = (decode alone + compute alone - extraction) / min(decode alone, compute alone): 0 = one after the other,
100% = the shorter one hidden entirely (above 100%: decoding ran on several workers at once).
`python bench/bench_extract.py --e2e --tiny` checks the path in a minute on a CPU; on a GPU, without `--tiny`:
`python bench/bench_extract.py --e2e --device cuda --videos 24 --seconds 8` (ViT-L/14 S2 + VideoMAE-L, random weights).
"""
import argparse, inspect, json, os, platform, shutil, tempfile, time
from pathlib import Path
import numpy as np, torch

def vit_flops(layers, width, tokens, patch_weights, patches, mlp=4):
    lin = layers * (4 + 2 * mlp) * width * width
    return 2 * lin * tokens + 2 * patch_weights * patches + 4 * layers * tokens ** 2 * width


def sync(device):
    if torch.device(device).type == 'cuda': torch.cuda.synchronize()

def timed(fn, device, min_s=0.0):
    "Seconds per call of fn (after one warm-up call), repeating until min_s has passed."
    fn(); sync(device); n, t0 = 0, time.perf_counter()
    while True:
        fn(); sync(device); n += 1
        if time.perf_counter() - t0 >= min_s: return (time.perf_counter() - t0) / n

def matmul_peak(dtype, device, n, min_s=2.0):
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    return 2 * n ** 3 / timed(lambda: a @ b, device, min_s)

def encoders(tiny: bool):
    "ViT-L/14 and VideoMAE-L at random weights (or, with `tiny`, the same classes at a small width, for the test)."
    from transformers import CLIPVisionConfig, VideoMAEConfig
    from spamo.spatial import SpatialEncoder
    from spamo.motion import MotionEncoder
    w, L, heads = (128, 2, 4) if tiny else (1024, 24, 16)
    vit = CLIPVisionConfig(hidden_size=w, num_hidden_layers=L, num_attention_heads=heads, intermediate_size=4 * w, image_size=224,
                           patch_size=14) if tiny else 'ViT-L-14'
    cfg = VideoMAEConfig(hidden_size=w, num_hidden_layers=L, num_attention_heads=heads, intermediate_size=4 * w,
                         tubelet_size=2, patch_size=16, num_frames=16, image_size=224)
    flops = (vit_flops(L, w, 257, 3 * 14 * 14 * w, 256), vit_flops(L, w, 1568, 3 * 2 * 16 * 16 * w, 1568))
    return SpatialEncoder.from_name(vit, pretrained=None), MotionEncoder.from_name(cfg), flops

def synthetic_videos(folder, n:int, seconds:float, fps:int, wh:tuple) -> list:
    "`n` How2Sign-like H.264 mp4s (moving shapes on a gradient, a little noise) of 0.5x to 1.5x `seconds`; three are encoded, the rest copied."
    from spamo.testing import write_video
    folder, (w, h), rng = Path(folder), wh, np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for k, f in enumerate((0.5, 1.0, 1.5)[:n]):
        T = max(1, round(seconds * f * fps))
        yy, xx = np.mgrid[0:h, 0:w]
        bg = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], -1).astype(np.uint8)
        frames = np.repeat(bg[None], T, 0)
        for t in range(T):
            x0, y0 = (37 * t + 200 * k) % (w - 200), (23 * t) % (h - 300)
            frames[t, y0:y0 + 300, x0:x0 + 200] = (200, 120, 90)
            frames[t] = np.clip(frames[t] + rng.integers(-6, 7, (h, w, 1)), 0, 255)
        made.append(write_video(folder/f'v{k}.mp4', frames, fps=fps))
    out = []
    for i in range(n):
        out.append(folder/f'video{i:03d}.mp4'); shutil.copy(made[i % len(made)], out[-1])
    return out

def parse_size(s):
    "The decode size as `spamo extract --size` reads it ('256' a square, '224,398' (H, W), 'short:256'); '' None."
    try: from spamo.video import parse_size as parse                      # the package's own reading, where it has one
    except ImportError: return None if not s else tuple(map(int, s.split(','))) if ',' in s else int(s)
    return parse(s or '')

def end_to_end(a):
    "Decode + preprocess + encode + write, as `spamo extract` does: frames/s and the decode/compute overlap."
    import spamo.features as F
    from spamo.data import load_dataset, read_sample
    from spamo.store import FeatureStore, store_settings, write_record
    dev, size, work = a.device, parse_size(a.size), Path(tempfile.mkdtemp(prefix='bench_e2e_'))
    try:
        cuda = dev.startswith('cuda')
        n, sec = a.videos or (24 if cuda else 6), a.seconds or (8.0 if cuda else 2.0)
        paths = sorted(Path(a.video_dir).glob('*.mp4'))[:n] if a.video_dir else synthetic_videos(work/'videos', n, sec, 25, (1280, 720))
        (work/'m.csv').write_text('id,video,text,language,split\n' + ''.join(f'v{i:03d},{p},x,en,train\n' for i, p in enumerate(paths)))
        samples = load_dataset('manifest', work/'m.csv', 'train')
        if a.tiny:                                     # the registry's tiny encoders (64-pixel inputs): decoding and preprocessing dominate
            from spamo.spatial import SpatialEncoder
            from spamo.motion import MotionEncoder
            se, me = SpatialEncoder.from_name('tiny'), MotionEncoder.from_name('tiny')
        else: se, me, _ = encoders(False)
        se.prepare(dev, a.dtype); me.prepare(dev, a.dtype)
        enc = getattr(F, 'encode_video', None)        # one upload shared by both encoders, where this version has it
        def compute(frames): return enc(se, me, frames) if enc else (se.encode(frames), me.encode(frames))
        compute(np.zeros((20, 720, 1280, 3), np.uint8)); sync(dev)   # warm-up (kernels, allocator)
        read_sample(samples[0], 1, size)                 # warm-up: the decoder's import and first open are not decoding
        t0 = time.perf_counter(); frames = sum(len(read_sample(s, 1, size)[0]) for s in samples); t_dec = time.perf_counter() - t0
        decoded = [read_sample(s, 1, size)[0] for s in samples]   # again, kept for compute alone (holding them all slows decoding)
        settings = store_settings(se, me, 'float16', 'x', size, 1); (work/'c').mkdir()
        t0 = time.perf_counter()
        for s, f in zip(samples, decoded):
            zs, zm = compute(f); write_record(work/'c'/f'{s.id}.safetensors', s.id, zs, zm, settings)
        sync(dev); t_comp = time.perf_counter() - t0
        del decoded
        kw = dict(workers=a.workers or F.decode_workers()) if 'workers' in inspect.signature(F.extract).parameters else {}
        t0 = time.perf_counter()
        r = F.extract(samples, work/'store', se, me, device=dev, dtype=a.dtype, size=size, progress=False, **kw)
        t_e2e = time.perf_counter() - t0
        assert r['frames'] == frames and len(FeatureStore(work/'store')) == len(samples), r
        overlap = (t_dec + t_comp - t_e2e) / min(t_dec, t_comp)
        res = dict(videos=len(samples), frames=frames, decode_size=size, decode_fps=frames / t_dec, compute_fps=frames / t_comp,
                   e2e_fps=frames / t_e2e, bound_fps=frames / max(t_dec, t_comp), overlap=overlap, extract_report_fps=r['frames_per_s'],
                   load=os.getloadavg(), workers=kw.get('workers'), waiting_s=r.get('waiting_s'), encode_video=enc is not None, tiny=a.tiny, device=dev)
        print(f"{len(samples)} videos, {frames} frames at {'source size' if size is None else size} ({'tiny' if a.tiny else 'ViT-L/14 S2 + VideoMAE-L'} encoders, {dev}):")
        print(f"  decode alone {res['decode_fps']:.1f} frames/s (1 thread), compute alone {res['compute_fps']:.1f} frames/s, "
              f"end to end {res['e2e_fps']:.1f} frames/s (one after the other would be {frames / (t_dec + t_comp):.1f}, "
              f"perfect overlap {res['bound_fps']:.1f}); overlap {overlap:.0%}"
              + (f"; {kw['workers']} decode workers, the encoders waited {r['waiting_s']:.1f} s of {t_e2e:.1f}" if kw else ''))
        print(json.dumps(res))
        return res
    finally: shutil.rmtree(work, ignore_errors=True)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--e2e', action='store_true', help='end to end: decode + preprocess + encode + write of whole videos (see above)')
    p.add_argument('--videos', type=int, default=None, help='--e2e: videos (default 6 CPU, 24 CUDA)')
    p.add_argument('--seconds', type=float, default=None, help='--e2e: mean seconds per synthetic video (default 2 CPU, 8 CUDA)')
    p.add_argument('--video-dir', default=None, help='--e2e: a folder of real mp4s to read instead of synthetic ones')
    p.add_argument('--size', default=None, help="--e2e: decode size as `spamo extract --size` takes it (default: source size)")
    p.add_argument('--workers', type=int, default=None, help='--e2e: decode workers per process (default: by cores)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--frames', type=int, default=None, help='frames for the spatial encoder (default 2 CPU, 64 CUDA)')
    p.add_argument('--clips', type=int, default=None, help='clips for the motion encoder (default 1 CPU, 16 CUDA)')
    p.add_argument('--dtype', default='auto', help="the extraction's dtype (auto: bf16 where native, else fp32; see resolve_dtype)")
    p.add_argument('--tiny', action='store_true', help='small encoders of the same classes: checks the code path in seconds')
    a = p.parse_args(argv)
    if a.e2e: return end_to_end(a)
    from spamo.spatial import resolve_dtype, cpu_has_bf16
    from spamo.motion import clip_windows
    dev, cuda = a.device, a.device.startswith('cuda')
    F, C = a.frames or (64 if cuda else 2), a.clips or (16 if cuda else 1)
    auto = {torch.float32: 'fp32', torch.bfloat16: 'bf16', torch.float16: 'fp16'}[resolve_dtype(a.dtype, dev, frozen=True)]
    dtypes = list(dict.fromkeys([auto, 'fp32'] + (['bf16'] if cuda or cpu_has_bf16() else [])))   # side by side: each against its own peak
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (F, 260, 210, 3), dtype=np.uint8)          # PHOENIX-size frames
    T = 16 + 8 * (C - 1)                                                      # C clips at stride 8
    video = rng.integers(0, 256, (T, 260, 210, 3), dtype=np.uint8)
    info = dict(device=torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
                threads=torch.get_num_threads(), load=os.getloadavg() if hasattr(os, 'getloadavg') else None,
                cpu_native_bf16=cpu_has_bf16(), auto_dtype=auto, tiny=a.tiny)
    n, min_s = (8192 if cuda else 2048) // (4 if a.tiny else 1), 0.1 if a.tiny else 1.0   # tiny: a check of the code path, not a figure
    def peaks(): return {k: matmul_peak(dt, dev, n if k == 'fp32' else n // 2, 2 * min_s) for k, dt in (('fp32', torch.float32), ('bf16', torch.bfloat16), ('fp16', torch.float16)) if k in dtypes}
    peak = peaks()
    se, me, (fl_image, fl_clip) = encoders(a.tiny)
    fl, clips = 5 * fl_image, len(clip_windows(T))                            # S2 (1, 2): 5 images per frame
    # naive = fp32, one frame, one scale, one crop (one clip) per forward; optimized = batched S2 crops, batch per device
    se.prepare(dev, 'fp32'); naive = timed(lambda: se.encode_reference(frames[:1]), dev)
    me.to(dev, torch.float32); naive_m = timed(lambda: me.encode(video[:16], batch_size=1), dev)
    res = dict(info=info)
    for dt in dtypes:
        se.prepare(dev, dt); opt = timed(lambda: se.encode(frames), dev, min_s) / F
        me.prepare(dev, dt); opt_m = timed(lambda: me.encode(video), dev, min_s) / clips
        n_t, o_t = naive + naive_m / 8, opt + opt_m / 8                       # a video frame: one S2 frame and 1/8 of a clip
        res[dt] = dict(spatial=dict(naive_fps=1 / naive, opt_fps=1 / opt, speedup=naive / opt, opt_gflops=fl / opt / 1e9),
                       motion=dict(naive_clips_per_s=1 / naive_m, opt_clips_per_s=1 / opt_m, speedup=naive_m / opt_m, opt_gflops=fl_clip / opt_m / 1e9),
                       both=dict(naive_fps=1 / n_t, opt_fps=1 / o_t, speedup=n_t / o_t, opt_gflops=(fl + fl_clip / 8) / o_t / 1e9))
    peak = {k: max(v, peak[k]) for k, v in peaks().items()}                  # measured before and after: the best
    info['load_end'] = os.getloadavg() if hasattr(os, 'getloadavg') else None
    res['peak_gflops'] = {k: v / 1e9 for k, v in peak.items()}
    for dt in dtypes:
        for k in ('spatial', 'motion', 'both'): res[dt][k]['frac_of_peak'] = res[dt][k]['opt_gflops'] * 1e9 / peak[dt]
    print(f"device {info['device']}, {info['threads']} threads, load {info['load']} -> {info['load_end']}, "
          f"native bf16 {info['cpu_native_bf16']}, --dtype {a.dtype} runs in {auto}{' (tiny encoders)' if a.tiny else ''}")
    print('matmul peak: ' + ', '.join(f"{k} {v:.0f} GFLOP/s" for k, v in res['peak_gflops'].items()))
    print(f"{'':16}" + ''.join(f"{dt + (' (auto)' if dt == auto else ''):>34}" for dt in dtypes))
    names = ('tiny ViT S2', 'tiny VideoMAE') if a.tiny else ('ViT-L/14 S2', 'VideoMAE-L')
    for k, name, unit in (('spatial', names[0], 'frames/s'), ('motion', names[1], 'clips/s'), ('both', 'both (stride 8)', 'frames/s')):
        rate = 'opt_clips_per_s' if k == 'motion' else 'opt_fps'
        print(f"{name:16}" + ''.join(f"{res[dt][k][rate]:8.3f} {unit:8} {res[dt][k]['opt_gflops']:6.0f} GF/s {res[dt][k]['frac_of_peak']:4.0%}".rjust(34) for dt in dtypes))
    print(f"(each dtype's GFLOP/s as a fraction of the measured matmul peak of that dtype; naive fp32 path: "
          f"{res['fp32']['both']['naive_fps']:.3f} frames/s, optimized {auto} x{res[auto]['both']['speedup']:.2f})")
    print(json.dumps(res))
    return res

if __name__ == '__main__': main()
