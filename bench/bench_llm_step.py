"""One SpaMo training step at the Flan-T5-XL shape (issue: "the LoRA LLM at the Flan-T5-XL shape builds and runs").

Random weights from Flan-T5-XL's config (nothing is downloaded), LoRA r=16 on q and v, a full-size Sign Adapter
(2048 + 1024 -> 2048, hidden 1024) giving 64 visual tokens per sample, the instruction prompt and a 24-token target.
Prints build time, parameter counts, the time of each step, peak memory (RSS on CPU, allocated on CUDA) and tokens/s.

    python bench/bench_llm_step.py                                # CPU, bf16, batch 1
    python bench/bench_llm_step.py --device cuda --batch-size 8   # the H100 figure for bench/RESULTS.md
"""
import argparse, resource, time
import torch
from transformers import T5Config, T5ForConditionalGeneration
from spamo.adapter import SignAdapter, collate_features
from spamo.llm import prepare_llm
from spamo.model import SpaMo
from spamo.testing import train_tokenizer

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument('--device', default='cpu'); p.add_argument('--dtype', default='bf16', choices=['bf16', 'fp32'])
p.add_argument('--batch-size', type=int, default=1); p.add_argument('--steps', type=int, default=2)
p.add_argument('--layers', type=int, default=24, help='encoder (and decoder) layers; 24 is Flan-T5-XL')
a = p.parse_args()
dev, dtype = torch.device(a.device), dict(bf16=torch.bfloat16, fp32=torch.float32)[a.dtype]

def peak_gb() -> float:
    if dev.type == 'cuda': return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

torch.manual_seed(0); t0 = time.time()
cfg = T5Config(vocab_size=32128, d_model=2048, d_kv=64, d_ff=5120, num_layers=a.layers, num_decoder_layers=a.layers,
               num_heads=32, feed_forward_proj='gated-gelu', pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
torch.set_default_dtype(dtype)
try: llm = T5ForConditionalGeneration(cfg)
finally: torch.set_default_dtype(torch.float32)
target = ' '.join(f'w{i}' for i in range(23))  # 23 words + eos = 24 target tokens
tok = train_tokenizer([target, 'Translate the given sentence into German.'], kind='wordlevel')
model = SpaMo(SignAdapter(2048, 1024, 2048, hidden=1024), prepare_llm(llm), tok).to(dev)
n_all = sum(q.numel() for q in model.parameters()); n_train = sum(q.numel() for q in model.parameters() if q.requires_grad)
print(f'{a.layers}+{a.layers} layers, {a.dtype} on {dev}: built in {time.time() - t0:.1f} s, {n_all / 1e9:.3f}B parameters, '
      f'{n_train / 1e6:.1f}M trainable, peak {peak_gb():.2f} GB', flush=True)

# 228 frames and 28 clips (stride 8) -> 256 positions -> 64 visual tokens after the adapter's two poolings
b = collate_features([dict(spatial=torch.randn(228, 2048), motion=torch.randn(28, 1024))] * a.batch_size)
b |= dict(text=[target] * a.batch_size, language=['de'] * a.batch_size)
z, _ = model.visual_tokens(b)
n_prompt = len(tok('Translate the given sentence into German.').input_ids)
tokens = a.batch_size * (z.shape[1] + n_prompt + 24)
opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
model.train()
for s in range(a.steps):
    if dev.type == 'cuda': torch.cuda.synchronize()
    t1 = time.time()
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == 'cuda' and a.dtype == 'bf16'):
        out = model(b)
    opt.zero_grad(); out['loss'].backward(); opt.step()
    if dev.type == 'cuda': torch.cuda.synchronize()
    dt = time.time() - t1
    print(f"step {s}: {dt:.2f} s, {tokens / dt:.0f} tokens/s (batch {a.batch_size}, {tokens} tokens: {z.shape[1]} visual + "
          f"{n_prompt} prompt + 24 target each), loss {out['loss'].item():.3f}, peak {peak_gb():.2f} GB", flush=True)
print(f'torch threads: {torch.get_num_threads()}')
