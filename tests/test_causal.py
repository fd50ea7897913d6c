"""The causal (decoder-only) LLM family on tiny random Llama and Qwen2 models loaded by path: the loss reads only the
target, a translation does not depend on its batch, resume is exact, LoRA trains only itself, a causal run translates,
and QLoRA stops before loading on a machine that cannot run it."""
import csv, importlib.util
from pathlib import Path
import pytest, torch
import torch.nn.functional as F
from safetensors.torch import load_file
from spamo.llm import Causal
from spamo.config import ModelConfig
from spamo.presets import resolve_config
from spamo.model import SpaMo, build_model
from spamo.checkpoint import load_run
from spamo.adapter import SignAdapter
from spamo.llm import prepare_llm
from spamo.testing import (TOY_SENTENCES as SENTS, train_tokenizer, tiny_causal, pretrain_causal, toy_batch, smoke_run,
                           prepare_tiny_llm)

torch.set_num_threads(1)
ARCHS = {'llama': 'llama', 'qwen2': 'qwen'}   # model architecture -> tokenizer layout (Llama: BOS, no pad; Qwen: no BOS)


def saved(tmp_path, arch, d_model=32):
    "A tiny random decoder-only LM and its tokenizer written by save_pretrained: loaded like a hub name."
    tok = train_tokenizer(SENTS, layout=ARCHS[arch])
    d = tmp_path / arch; tiny_causal(tok, d_model=d_model, arch=arch).save_pretrained(d); tok.save_pretrained(d)
    return d


def model_of(path, **kw) -> SpaMo:
    torch.manual_seed(0)
    return build_model(ModelConfig(llm=str(path), llm_family='causal', llm_dtype='fp32', adapter_hidden=32, spatial_dim=32,
                                   motion_dim=16, **kw))


@pytest.mark.parametrize('arch', ARCHS)
def test_the_loss_reads_only_the_target_tokens(arch, tmp_path):
    "Labels are -100 on BOS, sign tokens, prompt and padding; the loss is the cross-entropy of the target tokens (+ EOS) alone."
    m = model_of(saved(tmp_path, arch)).eval()
    b = toy_batch(3, SENTS) | dict(prompt=['Translate.', 'Translate the given sentence into German.', 'x'])
    z, zm = m.visual_tokens(b)
    x, xm = m.llm_inputs(z, zm, b)
    ids, mask = m.tokens(b['text'], m.max_target_len, target=True)
    seq, sm, y = Causal.sequence(m.llm, x, xm, ids.masked_fill(mask == 0, -100))
    ctx, n = xm.sum(1), mask.sum(1)
    for i in range(3):   # the labels are the target ids exactly on the target span, -100 everywhere else
        want = torch.full_like(y[i], -100); want[ctx[i]:ctx[i] + n[i]] = ids[i, :n[i]]
        assert torch.equal(y[i], want)
        assert ids[i, n[i] - 1] == m.tokenizer.eos_token_id       # EOS appended: the model learns to stop
    bos = m.tokenizer.bos_token_id
    assert torch.equal(seq[:, 0], m.llm.get_input_embeddings()(torch.tensor([bos] * 3))) if arch == 'llama' else \
        torch.equal(seq[:, 0], z[:, 0].to(seq.dtype))              # BOS first where the tokenizer adds one, else the sign tokens
    logits = m.llm(inputs_embeds=seq, attention_mask=sm).logits.float()
    ref = torch.cat([F.cross_entropy(logits[i, ctx[i] - 1:ctx[i] + n[i] - 1], ids[i, :n[i]], reduction='none') for i in range(3)]).mean()
    with torch.no_grad(): out = m(b)
    torch.testing.assert_close(out['ce'], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('side', ['left', 'right'])
@pytest.mark.parametrize('arch', ARCHS)
def test_a_translation_does_not_depend_on_its_batch(arch, side, tmp_path):
    "Beam search gives one sample the same translation alone and beside longer samples, whatever the tokenizer's padding side."
    m = model_of(saved(tmp_path, arch, d_model=64)).eval()
    m.tokenizer.padding_side = side
    torch.manual_seed(1)
    for p in m.adapter.parameters(): p.data.normal_(0, 0.5)         # visual tokens that steer the random LM
    b = toy_batch(3, SENTS)                                           # video lengths 10, 11, 12: sample 0 is the shortest
    b['prompt'] = ['Translate.', 'Translate the given sentence into German, please.', 'Translate the given sentence.']
    one = toy_batch(1, SENTS) | dict(prompt=b['prompt'][:1])          # the same first sample, alone: no padding at all
    assert torch.equal(one['spatial'][0], b['spatial'][0, :10])
    many = m.generate(b, num_beams=3, max_new_tokens=8)
    assert m.generate(one, num_beams=3, max_new_tokens=8)[0] == many[0] and many[0]
    assert len(set(many)) > 1     # the samples do get different translations: the batch is not one repeated answer


def test_lora_trains_only_its_weights(tmp_path):
    "LoRA on q_proj and v_proj by default (lora_targets overrides it): one step changes only LoRA, adapter and temperature."
    d = saved(tmp_path, 'llama')
    m = model_of(d)
    names = [n for n, p in m.named_parameters() if p.requires_grad]
    assert {n.split('.')[0] for n in names} == {'adapter', 'temperature', 'llm'}
    assert all('lora_' in n for n in names if n.startswith('llm.'))
    assert {n.split('.')[-4] for n in names if n.startswith('llm.')} == {'q_proj', 'v_proj'}
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1.0)
    m(toy_batch(4, SENTS))['loss'].backward(); opt.step()
    changed = {k for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert any('lora_B' in k for k in changed) and any(k.startswith('adapter.') for k in changed)
    assert all(k.startswith(('adapter.', 'temperature.')) or 'lora_' in k for k in changed), changed
    o = model_of(d, lora_targets='k_proj,o_proj,gate_proj')
    assert {n.split('.')[-4] for n, p in o.llm.named_parameters() if p.requires_grad} == {'k_proj', 'o_proj', 'gate_proj'}
    assert {n.split('.')[0] for n, p in model_of(d, lora=False).named_parameters() if p.requires_grad} == {'adapter', 'temperature'}


def test_a_tiny_llama_learns_the_toy_task():
    "Pretrained as an LM on the sentences, frozen with LoRA, the causal SpaMo learns to name the sentence from the features."
    tok = train_tokenizer(SENTS, kind='wordlevel', layout='llama')
    torch.manual_seed(0)
    llm, _ = pretrain_causal(tiny_causal(tok, d_model=64), tok, SENTS, steps=40, batch_size=8, lr=3e-3)
    m = SpaMo(SignAdapter(32, 16, 64, hidden=64), prepare_llm(llm, targets=Causal.targets, task_type=Causal.task_type), tok, 'causal')
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=3e-3)
    m.train(); ce = []
    for i in range(30):
        out = m(toy_batch(8, SENTS, seed=i)); opt.zero_grad(); out['loss'].backward(); opt.step(); ce.append(out['ce'].item())
    ev = toy_batch(12, SENTS, seed=999)
    hyp = m.generate(ev, num_beams=3, max_new_tokens=16)
    acc = sum(h == t for h, t in zip(hyp, ev['text'])) / len(hyp)
    assert ce[-1] < 0.3 * ce[0] and acc >= 0.9, (ce[0], ce[-1], hyp)


@pytest.fixture(scope='module')
def causal_runs(tmp_path_factory):
    "Two causal runs on the smoke data: one straight through 4 steps, one stopped after 2 and resumed."
    from spamo.train import train
    from spamo.data import load_dataset
    out, tmp = smoke_run().parent, tmp_path_factory.mktemp('causal')
    root, feats = out / 'data' / 'synthsign', out / 'data' / 'features'
    llm = prepare_tiny_llm([s.text for s in load_dataset('phoenix14t', root, 'train')], tmp / 'llm', steps=20, d_model=32, family='causal')
    def cfg(run, **kw):
        return resolve_config(run_dir=str(tmp / run), data_root=str(root), features=str(feats), llm=str(llm), llm_family='causal',
                                  llm_dtype='fp32', precision='fp32', adapter_hidden=32, vt_warmup_steps=1, max_steps=4, batch_size=4,
                                  lr=1e-3, lr_warmup_steps=1, num_examples=0, eval_every=2, save_every=2, num_beams=2, max_new_tokens=8, **kw)
    a = train(cfg('a'), progress=False)
    train(cfg('b'), stop_after=2, progress=False)
    b = train(cfg('b', resume=True), progress=False)
    return tmp / 'a', tmp / 'b', a, b


def test_causal_resume_is_exact(causal_runs):
    ra, rb, a, b = causal_runs
    assert a['steps'] == b['steps'] == 4
    wa, wb = (load_file(r / 'checkpoints' / 'last' / 'trainable.safetensors') for r in (ra, rb))
    assert wa.keys() == wb.keys() and any('lora_' in k for k in wa) and all(torch.equal(wa[k], wb[k]) for k in wa)
    loss = lambda r: [row['loss'] for row in csv.DictReader(open(r / 'log.csv'))]
    assert loss(ra) == loss(rb) and len(loss(ra)) == 4


def test_a_causal_run_loads_and_translates(causal_runs):
    from spamo.translate import Translator
    from spamo.data import load_dataset
    run = causal_runs[0]
    model, cfg = load_run(run)
    assert cfg.model.llm_family == 'causal' and model.family is Causal and not model.training
    video = load_dataset(cfg.data.dataset, cfg.data.data_root, 'test')[0].video
    out = Translator.from_run(run, progress=False)([video])
    assert out[0].error is None and isinstance(out[0].text, str)


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message of a machine without CUDA')
@pytest.mark.parametrize('quant', ['4bit', '8bit'])
def test_quantised_llm_needs_cuda_and_bitsandbytes(quant, tmp_path, monkeypatch):
    "QLoRA on a CPU machine stops before any loading (a missing folder is not even looked at), naming CUDA and bitsandbytes."
    with pytest.raises(RuntimeError, match='CUDA GPU and bitsandbytes'):
        build_model(ModelConfig(llm=str(tmp_path / 'missing'), llm_family='causal', llm_quant=quant, spatial_dim=8, motion_dim=8))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'bitsandbytes' else real(name, *a))
    with pytest.raises(ImportError, match='pip install bitsandbytes'):
        build_model(ModelConfig(llm=str(tmp_path / 'missing'), llm_quant=quant, spatial_dim=8, motion_dim=8))
    with pytest.raises(ValueError, match='4bit'): build_model(ModelConfig(llm=str(tmp_path / 'missing'), llm_quant='2bit'))
