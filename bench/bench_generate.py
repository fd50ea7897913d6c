"""Generation throughput of evaluation (issue 26 item 2): the old path beside the new one, in one run.

old: `translate_data` as dev evaluation ran it before, batches of the training batch size (8) in the split's order;
new: batches of `eval_batch_size` (32), sorted by length (`translate_data(sort=True)`); between them, batches of 32
unsorted, which splits the gain into batch size and sorting. All with 5 beams. Prints sentences/s of each, the
ratio new / old, and whether the paths gave the same hypotheses.

Shapes (random weights built from a config: nothing is downloaded):
- `tiny` (default): a tiny T5 (d_model 64, 2+2 layers) and a Sign Adapter on CPU, with a feature store of
  `--sentences` synthetic videos whose lengths follow PHOENIX14T's (117 frames on average, 20 to 300).
- `smoke`: the smoke run of `spamo.testing` (a tiny T5 trained on SynthSign in seconds) on its own 40 videos,
  repeated to `--sentences`. A trained model stops its sentences where they end, as a real one does; a random
  model rarely emits EOS, so at the random shapes every sentence runs to `--max-new-tokens` and only the batch size
  and the input padding differ between the paths.
- `flan-t5-xl`: the real Flan-T5-XL shape (d_model 2048, d_kv 64, d_ff 5120, 24+24 layers, 32 heads, gated-gelu,
  vocabulary 32128), 16-bit, LoRA r 16 on q and v, the paper's adapter (2048 + 1024 -> 2048, hidden 1024),
  features of CLIP ViT-L S2 (2048) and VideoMAE-L (1024) widths. Needs ~7 GB; use it on a GPU.

Each prompt holds one in-context example sentence in three languages, as PHOENIX14T's do (`--no-examples`: the
instruction alone).

    python bench/bench_generate.py                                      # tiny, CPU
    python bench/bench_generate.py --shape smoke                        # trained tiny model, CPU
    python bench/bench_generate.py --shape flan-t5-xl --device cuda     # the GPU figure for bench/RESULTS.md
"""
import argparse, random, tempfile, time
from pathlib import Path
import torch

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument('--shape', default='tiny', choices=['tiny', 'smoke', 'flan-t5-xl'])
p.add_argument('--device', default='cpu')
p.add_argument('--sentences', type=int, default=0, help='sentences translated by each path (default: 96 tiny, 160 smoke, 256 flan-t5-xl)')
p.add_argument('--num-beams', type=int, default=5)
p.add_argument('--max-new-tokens', type=int, default=0, help='default: 32 tiny and smoke, 64 flan-t5-xl (the paper config)')
p.add_argument('--old-batch-size', type=int, default=8, help='the old path: the training batch size, unsorted')
p.add_argument('--eval-batch-size', type=int, default=32, help="the new path: TrainConfig.eval_batch_size, length-sorted")
p.add_argument('--dtype', default='auto', choices=['auto', 'bf16', 'fp32'], help='LLM weights (auto: bf16 on CUDA, else fp32)')
p.add_argument('--no-examples', action='store_true', help='prompts without in-context examples')
p.add_argument('--threads', type=int, default=0, help='CPU threads (0: torch default)')
p.add_argument('--repeats', type=int, default=3, help='timed runs of each path, interleaved; the fastest counts (a shared machine is noisy)')
a = p.parse_args()
if a.threads: torch.set_num_threads(a.threads)
dev = torch.device(a.device)
a.sentences = a.sentences or {'tiny': 96, 'smoke': 160, 'flan-t5-xl': 256}[a.shape]
a.max_new_tokens = a.max_new_tokens or (64 if a.shape == 'flan-t5-xl' else 32)
dtype = {'bf16': torch.bfloat16, 'fp32': torch.float32, 'auto': torch.bfloat16 if dev.type == 'cuda' else torch.float32}[a.dtype]

from spamo.adapter import SignAdapter
from spamo.data import Sample
from spamo.llm import prepare_llm
from spamo.model import FeatureData, SpaMo, translate_data
from spamo.store import FeatureStore, write_record
from spamo.tiny import train_tokenizer

WORDS = ('regen schnee sonne wolken wind gewitter nebel frost morgen heute nacht norden süden osten westen küste bergen '
         'rain snow sun clouds wind storm fog frost tomorrow today night north south east west coast mountains '
         'pluie neige soleil nuages vent orage brouillard gel demain nuit nord sud est ouest côte montagnes').split()
rng = random.Random(0)
sentence = lambda n: ' '.join(rng.choice(WORDS) for _ in range(n))


def synthetic_store(folder: Path, n: int, spatial_dim: int, motion_dim: int) -> list:
    "A feature store of `n` random videos, PHOENIX14T-like lengths (frames ~ N(117, 45) in [20, 300], clips every 8 frames)."
    settings = dict(spatial_dim=spatial_dim, motion_dim=motion_dim, dtype='float16', recipe='bench')
    store, samples = FeatureStore(folder, settings, create=True), []
    for i in range(n):
        frames = int(min(300, max(20, rng.gauss(117, 45)))); clips = max(1, (frames - 16) // 8 + 1)
        sid = f'bench-{i:05d}'
        write_record(store.file(sid), sid, torch.randn(frames, spatial_dim), torch.randn(clips, motion_dim), settings)
        samples.append(Sample(sid, '', sentence(rng.randint(6, 20)), 'de', 'test'))
    store.scan(); store.write_index()
    return samples


def random_model(shape: str):
    "SpaMo at `shape` with random weights: a T5 from its config, LoRA on q and v, a Sign Adapter sized to the features."
    from transformers import T5Config, T5ForConditionalGeneration
    tok = train_tokenizer(WORDS + ['Translate the given sentence into German.'], kind='wordlevel')
    if shape == 'flan-t5-xl':   # google/flan-t5-xl config.json, written out
        cfg = T5Config(vocab_size=32128, d_model=2048, d_kv=64, d_ff=5120, num_layers=24, num_decoder_layers=24, num_heads=32,
                       feed_forward_proj='gated-gelu', tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
        dims, hidden = (2048, 1024), 1024
    else:
        cfg = T5Config(vocab_size=len(tok), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
                       feed_forward_proj='gated-gelu', pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
        dims, hidden = (32, 16), 64
    torch.manual_seed(0); torch.set_default_dtype(dtype)
    try:
        with torch.device(dev): llm = T5ForConditionalGeneration(cfg)
    finally: torch.set_default_dtype(torch.float32)
    model = SpaMo(SignAdapter(*dims, cfg.d_model, hidden=hidden), prepare_llm(llm), tok, max_prompt_len=256).to(dev)
    return model.eval(), dims


tmp = tempfile.TemporaryDirectory()
t0 = time.time()
if a.shape == 'smoke':
    from spamo.checkpoint import load_run
    from spamo.data import load_dataset
    from spamo.testing import smoke_run
    model, rc = load_run(smoke_run(), device=dev)
    own = [s for split in ('train', 'dev', 'test') for s in load_dataset(rc.data.dataset, rc.data.data_root, split)]
    data = FeatureData([own[i % len(own)] for i in range(a.sentences)], FeatureStore(rc.data.features))
else:
    model, dims = random_model(a.shape)
    samples = synthetic_store(Path(tmp.name) / 'features', a.sentences, *dims)
    data = FeatureData(samples, FeatureStore(Path(tmp.name) / 'features'))
pairs = {}   # one example sentence per prompt with its translations into three languages, as PHOENIX14T's prompts hold
for s in data.samples:
    n = rng.randint(6, 20); target = sentence(n)
    pairs.setdefault(s.id, [(sentence(n), target) for _ in ('en', 'fr', 'es')])
examples = None if a.no_examples else (lambda s: pairs[s.id])
params = sum(p.numel() for p in model.parameters())
print(f'shape {a.shape}: {params / 1e6:.1f}M parameters, {dtype}, on {dev}, built in {time.time() - t0:.1f} s; '
      f'{a.sentences} sentences, {a.num_beams} beams, up to {a.max_new_tokens} new tokens, examples: {not a.no_examples}')


def run(batch_size: int, sort: bool) -> tuple[float, list]:
    if dev.type == 'cuda': torch.cuda.synchronize()
    t = time.perf_counter()
    hyps = translate_data(model, data, examples, batch_size, num_beams=a.num_beams, max_new_tokens=a.max_new_tokens, sort=sort)
    if dev.type == 'cuda': torch.cuda.synchronize()
    return time.perf_counter() - t, hyps


if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats()
translate_data(model, data, examples, a.eval_batch_size, idx=list(range(min(a.eval_batch_size, len(data)))), num_beams=a.num_beams, max_new_tokens=4)   # warm-up
paths = [(a.old_batch_size, False), (a.eval_batch_size, False), (a.eval_batch_size, True)]
times, outs = {k: [] for k in paths}, {}
for r in range(a.repeats):
    for k in paths: t, outs[k] = run(*k); times[k].append(t)
(old_s, old), (mid_s, mid), (new_s, new) = [(min(times[k]), outs[k]) for k in paths]
print(f'fastest of {a.repeats} interleaved runs each; all runs (s): ' + '; '.join(f"batch {b}{' sorted' if s else ''}: " + ' '.join(f'{t:.1f}' for t in times[(b, s)]) for b, s in paths))
print(f'old: batch {a.old_batch_size:3d}, unsorted: {a.sentences / old_s:8.2f} sentences/s ({old_s:.1f} s)')
print(f'     batch {a.eval_batch_size:3d}, unsorted: {a.sentences / mid_s:8.2f} sentences/s ({mid_s:.1f} s)   (batch size alone)')
print(f'new: batch {a.eval_batch_size:3d}, sorted:   {a.sentences / new_s:8.2f} sentences/s ({new_s:.1f} s)')
print(f'ratio new / old: {old_s / new_s:.2f}x (sorting alone: {mid_s / new_s:.2f}x); same hypotheses as the old path: '
      f'{sum(x == y for x, y in zip(old, new))} of {len(old)} (unsorted batch {a.eval_batch_size}: {sum(x == y for x, y in zip(old, mid))}); '
      f'mean hypothesis length {sum(len(h.split()) for h in new) / len(new):.1f} words')
if dev.type == 'cuda': print(f'peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB')
