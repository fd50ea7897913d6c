"""Benchmark feature extraction: naive reference vs the optimized path, ViT-L/14 (S2) and VideoMAE-L at random weights.

Run: `python bench/bench_extract.py [--device cuda] [--frames 2] [--clips 1]`. Prints a table and a JSON line.
FLOPs are counted by hand (NOTES: torch's FlopCounter undercounts the fused attention paths on CPU):
2 x linear weights x tokens + 2 x patch-embedding weights x patches + 4 x layers x tokens^2 x width.
"""
import argparse, json, os, platform, time
import numpy as np, torch

def vit_flops(layers, width, tokens, patch_weights, patches, mlp=4):
    lin = layers * (4 + 2 * mlp) * width * width
    return 2 * lin * tokens + 2 * patch_weights * patches + 4 * layers * tokens ** 2 * width

VIT_L14 = vit_flops(24, 1024, 257, 3 * 14 * 14 * 1024, 256)              # one 224x224 image: ~162 GFLOP
VIDEOMAE_L = vit_flops(24, 1024, 1568, 3 * 2 * 16 * 16 * 1024, 1568)     # one 16x224x224 clip: ~1194 GFLOP

def sync(device):
    if torch.device(device).type == 'cuda': torch.cuda.synchronize()

def timed(fn, device, min_s=0.0):
    "Seconds per call of fn (after one warm-up call), repeating until min_s has passed."
    fn(); sync(device); n, t0 = 0, time.perf_counter()
    while True:
        fn(); sync(device); n += 1
        if time.perf_counter() - t0 >= min_s: return (time.perf_counter() - t0) / n

def matmul_peak(dtype, device, n):
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    return 2 * n ** 3 / timed(lambda: a @ b, device, min_s=2.0)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--frames', type=int, default=None, help='frames for the spatial encoder (default 2 CPU, 64 CUDA)')
    p.add_argument('--clips', type=int, default=None, help='clips for the motion encoder (default 1 CPU, 16 CUDA)')
    p.add_argument('--dtype', default='auto', help='optimized path dtype (auto: bf16 where native, else fp32)')
    a = p.parse_args(argv)
    from transformers import VideoMAEConfig
    from spamo.spatial import SpatialEncoder, resolve_dtype, cpu_has_bf16
    from spamo.motion import MotionEncoder
    dev, cuda = a.device, a.device.startswith('cuda')
    F, C = a.frames or (64 if cuda else 2), a.clips or (16 if cuda else 1)
    opt_dtype = resolve_dtype(a.dtype, dev)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (F, 260, 210, 3), dtype=np.uint8)          # PHOENIX-size frames
    T = 16 + 8 * (C - 1)                                                      # C clips at stride 8
    video = rng.integers(0, 256, (T, 260, 210, 3), dtype=np.uint8)
    info = dict(device=torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
                threads=torch.get_num_threads(), load=os.getloadavg() if hasattr(os, 'getloadavg') else None,
                cpu_native_bf16=cpu_has_bf16(), optimized_dtype=str(opt_dtype).replace('torch.', ''))
    def peaks(): return {k: matmul_peak(dt, dev, 8192 if cuda else (2048 if dt == torch.float32 else 1024))
                         for k, dt in (('fp32', torch.float32), ('bf16', torch.bfloat16))}
    peak = peaks()
    # spatial: naive = fp32, one frame, one scale, one crop per forward; optimized = batched S2 crops, resolved dtype
    se = SpatialEncoder.from_name('ViT-L-14', pretrained=None)
    se.prepare(dev, 'fp32'); naive = timed(lambda: se.encode_reference(frames[:1]), dev)
    se.prepare(dev, opt_dtype); opt = timed(lambda: se.encode(frames), dev, 1.0) / F
    del se
    fl = 5 * VIT_L14                                                          # S2 (1, 2): 5 images per frame
    res = {}
    res['spatial'] = dict(naive_fps=1 / naive, opt_fps=1 / opt, speedup=naive / opt, opt_gflops=fl / opt / 1e9)
    # motion: naive = fp32, SDPA default, one clip per forward; optimized = resolved dtype, attention per device, batch per device
    from spamo.motion import clip_windows
    cfg = VideoMAEConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                         tubelet_size=2, patch_size=16, num_frames=16, image_size=224)
    me = MotionEncoder.from_name(cfg)
    me.to(dev, torch.float32); naive_m = timed(lambda: me.encode(video[:16], batch_size=1), dev)
    me.prepare(dev, opt_dtype); opt_m = timed(lambda: me.encode(video), dev, 1.0) / len(clip_windows(T))
    res['motion'] = dict(naive_clips_per_s=1 / naive_m, opt_clips_per_s=1 / opt_m, speedup=naive_m / opt_m,
                         opt_gflops=VIDEOMAE_L / opt_m / 1e9)
    peak = {k: max(v, peak[k]) for k, v in peaks().items()}                  # measured before and after: the best
    info['load_end'] = os.getloadavg() if hasattr(os, 'getloadavg') else None
    res = dict(info=info, peak_gflops={k: v / 1e9 for k, v in peak.items()}, **res)
    # one video frame costs one S2 frame and 1/8 of a clip (stride 8)
    n_t, o_t = naive + naive_m / 8, opt + opt_m / 8
    res['both'] = dict(naive_fps=1 / n_t, opt_fps=1 / o_t, speedup=n_t / o_t, opt_gflops=(fl + VIDEOMAE_L / 8) / o_t / 1e9)
    used = 'bf16' if opt_dtype == torch.bfloat16 else 'fp32'
    for k in ('spatial', 'motion', 'both'):
        g = res[k]['opt_gflops'] * 1e9
        res[k].update(frac_of_bf16_peak=g / peak['bf16'], frac_of_used_dtype_peak=g / peak[used])
    print(f"device {info['device']}, {info['threads']} threads, load {info['load']} -> {info['load_end']}, optimized dtype {info['optimized_dtype']}")
    print(f"matmul peak: fp32 {res['peak_gflops']['fp32']:.0f} GFLOP/s, bf16 {res['peak_gflops']['bf16']:.0f} GFLOP/s")
    s, m, b = res['spatial'], res['motion'], res['both']
    print(f"ViT-L/14 S2   naive {s['naive_fps']:.3f} frames/s  optimized {s['opt_fps']:.3f} frames/s  x{s['speedup']:.2f}  "
          f"{s['opt_gflops']:.0f} GFLOP/s = {s['frac_of_used_dtype_peak']:.0%} of {used} peak, {s['frac_of_bf16_peak']:.0%} of bf16 peak")
    print(f"VideoMAE-L    naive {m['naive_clips_per_s']:.3f} clips/s   optimized {m['opt_clips_per_s']:.3f} clips/s   x{m['speedup']:.2f}  "
          f"{m['opt_gflops']:.0f} GFLOP/s = {m['frac_of_used_dtype_peak']:.0%} of {used} peak, {m['frac_of_bf16_peak']:.0%} of bf16 peak")
    print(f"both (stride 8) naive {b['naive_fps']:.3f} frames/s  optimized {b['opt_fps']:.3f} frames/s  x{b['speedup']:.2f}  "
          f"{b['opt_gflops']:.0f} GFLOP/s = {b['frac_of_used_dtype_peak']:.0%} of {used} peak")
    print(json.dumps(res))
    return res

if __name__ == '__main__': main()
