"""One SpaMo training step at the Flan-T5-XL shape (issue: "the LoRA LLM at the Flan-T5-XL shape builds and runs").

Random weights from Flan-T5-XL's config (nothing is downloaded), LoRA r=16 on q and v, a full-size Sign Adapter
(2048 + 1024 -> 2048, hidden 1024) giving 64 visual tokens per sample, the instruction prompt and a 24-token target.
Prints build time, parameter counts, the time of each step, peak memory (RSS on CPU, allocated on CUDA) and tokens/s.

`--family causal` takes the Qwen2.5-1.5B shape instead (decoder-only, written out below: the hub is not needed), LoRA
on q_proj and v_proj, the sequence [visual ; prompt ; target]. `--quant 4bit` (QLoRA: NF4, bf16 compute) saves the
random bf16 weights to a temporary folder and loads them back through `spamo.llm.load_llm` with bitsandbytes, the path
a hub name takes; it needs CUDA and `pip install bitsandbytes`. On CUDA the peak memory of a quantised run is counted
from the 4-bit load on (the bf16 build before it is freed).

    python bench/bench_llm_step.py                                # CPU, bf16, batch 1
    python bench/bench_llm_step.py --device cuda --batch-size 8   # the H100 figure for bench/RESULTS.md
    python bench/bench_llm_step.py --device cuda --batch-size 8 --family causal --quant 4bit   # QLoRA at the Qwen2.5-1.5B shape
"""
import argparse, resource, tempfile, time
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM, T5Config, T5ForConditionalGeneration
from spamo.adapter import SignAdapter, collate_features
from spamo.llm import LLM_FAMILIES, QUANTS, llm_width, load_llm, prepare_llm
from spamo.model import SpaMo
from spamo.testing import train_tokenizer

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument('--device', default='cpu'); p.add_argument('--dtype', default='bf16', choices=['bf16', 'fp32'])
p.add_argument('--batch-size', type=int, default=1); p.add_argument('--steps', type=int, default=2)
p.add_argument('--layers', type=int, default=0, help='layers (0: the real shape: 24+24 for Flan-T5-XL, 28 for Qwen2.5-1.5B)')
p.add_argument('--family', default='seq2seq', choices=['seq2seq', 'causal'], help='seq2seq: Flan-T5-XL shape; causal: Qwen2.5-1.5B shape')
p.add_argument('--quant', default='none', choices=QUANTS, help='4bit/8bit: load the frozen LLM through bitsandbytes (CUDA)')
a = p.parse_args()
a.layers = a.layers or (24 if a.family == 'seq2seq' else 28)
from spamo.llm import quantization; quantization(a.quant)   # no CUDA or no bitsandbytes: stop now, not after the build
dev, dtype = torch.device(a.device), dict(bf16=torch.bfloat16, fp32=torch.float32)[a.dtype]

def peak_gb() -> float:
    if dev.type == 'cuda': return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

torch.manual_seed(0); t0 = time.time()
if a.family == 'seq2seq':
    cfg = T5Config(vocab_size=32128, d_model=2048, d_kv=64, d_ff=5120, num_layers=a.layers, num_decoder_layers=a.layers,
                   num_heads=32, feed_forward_proj='gated-gelu', pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    arch, shape = T5ForConditionalGeneration, f'Flan-T5-XL shape, {a.layers}+{a.layers} layers'
else:  # Qwen/Qwen2.5-1.5B(-Instruct)'s config.json, written out
    cfg = Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=a.layers, num_attention_heads=12,
                      num_key_value_heads=2, hidden_act='silu', max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1e6,
                      tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645)
    arch, shape = Qwen2ForCausalLM, f'Qwen2.5-1.5B shape, {a.layers} layers'
target = ' '.join(f'w{i}' for i in range(23))  # 23 words + eos = 24 target tokens
tok = train_tokenizer([target, 'Translate the given sentence into German.'], kind='wordlevel', layout='t5' if a.family == 'seq2seq' else 'qwen')
fam = LLM_FAMILIES[a.family]
torch.set_default_dtype(torch.bfloat16 if a.quant != 'none' else dtype)
try:
    with torch.device(dev if a.quant != 'none' else 'cpu'): llm = arch(cfg)
finally: torch.set_default_dtype(torch.float32)
if a.quant == 'none': llm = prepare_llm(llm, targets=fam.targets, task_type=fam.task_type)
else:   # the path of a hub name: save_pretrained, then load_llm with bitsandbytes and peft's k-bit preparation
    tmp = tempfile.TemporaryDirectory(); llm.save_pretrained(tmp.name); tok.save_pretrained(tmp.name); del llm
    if dev.type == 'cuda': torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    llm, tok = load_llm(tmp.name, family=a.family, quant=a.quant)
width = llm_width(llm)
model = SpaMo(SignAdapter(2048, 1024, width, hidden=1024), llm, tok, a.family)
if a.quant == 'none': model.to(dev)
else: model.adapter.to(dev); model.temperature.to(dev)   # bitsandbytes placed the LLM
n_all = sum(q.numel() for q in model.parameters()); n_train = sum(q.numel() for q in model.parameters() if q.requires_grad)
print(f"{shape}, {a.quant if a.quant != 'none' else a.dtype} on {dev}: built in {time.time() - t0:.1f} s, {n_all / 1e9:.3f}B parameters "
      f'(4-bit weights count half per element), {n_train / 1e6:.1f}M trainable, peak {peak_gb():.2f} GB', flush=True)

# 228 frames and 28 clips (stride 8) -> 256 positions -> 64 visual tokens after the adapter's two poolings
b = collate_features([dict(spatial=torch.randn(228, 2048), motion=torch.randn(28, 1024))] * a.batch_size)  # z: (B, 64, d')
b |= dict(text=[target] * a.batch_size, language=['de'] * a.batch_size)
z, _ = model.visual_tokens(b)
n_prompt = len(tok('Translate the given sentence into German.').input_ids)
tokens = a.batch_size * (z.shape[1] + n_prompt + 24)
opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
model.train()
for s in range(a.steps):
    if dev.type == 'cuda': torch.cuda.synchronize()
    t1 = time.time()
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == 'cuda' and (a.dtype == 'bf16' or a.quant != 'none')):
        out = model(b)
    opt.zero_grad(); out['loss'].backward(); opt.step()
    if dev.type == 'cuda': torch.cuda.synchronize()
    dt = time.time() - t1
    print(f"step {s}: {dt:.2f} s, {tokens / dt:.0f} tokens/s (batch {a.batch_size}, {tokens} tokens: {z.shape[1]} visual + "
          f"{n_prompt} prompt + 24 target each), loss {out['loss'].item():.3f}, peak {peak_gb():.2f} GB", flush=True)
print(f'torch threads: {torch.get_num_threads()}')
