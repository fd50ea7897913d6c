"""Official-recipe extraction speed on real How2Sign clips: frames/s of `spamo.features.extract` with random-weight
CLIP ViT-L/14 (transformers CLIPVisionModel, pre-norm CLS, S2 of the 224 crop) and VideoMAE-L (pre-norm CLS,
16-frame windows every 8, tail dropped), both built from their configs (no download) and saved with their image
processors, as `spamo extract --recipe official --spatial FOLDER --motion FOLDER` reads them.

    python bench/bench_official.py                      # CUDA: all 48 clips; CPU: --clips 1 --frames 32
    python bench/bench_official.py --clips 48 --device cuda --dtype bf16
The clips are the licensed test material (../shared/data/how2sign/clips, or $SPAMO_SHARED_DATA); it prints JSON.
"""
import argparse, json, os, platform, tempfile, time
from pathlib import Path
import torch


def build(out: Path):
    "Random-weight ViT-L/14 and VideoMAE-L folders with their processors (the hub models' shapes and settings)."
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPImageProcessor, VideoMAEConfig, VideoMAEModel, VideoMAEImageProcessor
    clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                                            image_size=224, patch_size=14, projection_dim=768))
    clip.save_pretrained(out / 'clip'); CLIPImageProcessor(size={'shortest_edge': 224}, crop_size=224).save_pretrained(out / 'clip')
    mae = VideoMAEModel(VideoMAEConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                                       tubelet_size=2, patch_size=16, num_frames=16, image_size=224, use_mean_pooling=False))
    mae.save_pretrained(out / 'mae'); VideoMAEImageProcessor(size={'shortest_edge': 224}, crop_size=224).save_pretrained(out / 'mae')
    return out / 'clip', out / 'mae'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cuda = torch.cuda.is_available()
    p.add_argument('--device', default='cuda' if cuda else 'cpu')
    p.add_argument('--dtype', default='auto')
    p.add_argument('--clips', type=int, default=48 if cuda else 1, help='How2Sign clips to extract (of 48)')
    p.add_argument('--frames', type=int, default=0 if cuda else 32, help='keep only the first N frames of each clip (0: all)')
    a = p.parse_args(argv)
    from spamo.data import load_manifest, Sample
    from spamo.features import extract
    from spamo.spatial import SpatialEncoder
    from spamo.motion import MotionEncoder
    from spamo.testing import shared_data
    root = shared_data()
    if root is None: raise SystemExit('the How2Sign clips are not here: set SPAMO_SHARED_DATA')
    clips = sorted((root / 'how2sign' / 'clips').glob('*/*.mp4'))[:a.clips]
    samples = [Sample(c.stem, str(c), '', 'en', 'test', start=0.0 if a.frames else None, end=a.frames / 50 if a.frames else None) for c in clips]
    with tempfile.TemporaryDirectory() as d:
        se_dir, me_dir = build(Path(d))
        se = SpatialEncoder.from_name(str(se_dir), recipe='official'); me = MotionEncoder.from_name(str(me_dir), recipe='official')
        t0 = time.time()
        rep = extract(samples, Path(d) / 'store', se, me, device=a.device, dtype=a.dtype, progress=False, recipe='official')
        wall = time.time() - t0
    info = dict(device=torch.cuda.get_device_name() if a.device.startswith('cuda') else platform.processor() or platform.machine(),
                dtype=a.dtype, clips=len(rep['extracted']), frames=rep['frames'], seconds=round(wall, 1),
                frames_per_s=round(rep['frames'] / wall, 2), load=os.getloadavg())
    print(json.dumps(info, indent=1))


if __name__ == '__main__':
    main()
