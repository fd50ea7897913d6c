"""Benchmark feature extraction: naive reference vs the optimized path, ViT-L/14 (S2) and VideoMAE-L at random weights.

Run: `python bench/bench_extract.py [--device cuda] [--frames 2] [--clips 1] [--tiny]`. Prints a table and a JSON line:
for fp32 and, where the CPU (or GPU) has it, bf16, side by side in one run, the throughput of the optimized path and
its fraction of the measured matmul peak of the dtype it ran in. `SPAMO_CPU_BF16=1|0` decides as on the other kind of CPU.
FLOPs are counted by hand (NOTES: torch's FlopCounter undercounts the fused attention paths on CPU):
2 x linear weights x tokens + 2 x patch-embedding weights x patches + 4 x layers x tokens^2 x width.
"""
import argparse, json, os, platform, time
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

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--frames', type=int, default=None, help='frames for the spatial encoder (default 2 CPU, 64 CUDA)')
    p.add_argument('--clips', type=int, default=None, help='clips for the motion encoder (default 1 CPU, 16 CUDA)')
    p.add_argument('--dtype', default='auto', help="the extraction's dtype (auto: bf16 where native, else fp32; see resolve_dtype)")
    p.add_argument('--tiny', action='store_true', help='small encoders of the same classes: checks the code path in seconds')
    a = p.parse_args(argv)
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
