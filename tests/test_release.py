"""The authors' checkpoint: converted without running its pickle, loaded strictly, and translating as their forward does."""
import json, math, os, pickle, sys, types
from pathlib import Path
import pytest, torch
from torch import nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence
from peft import LoraConfig, get_peft_model
from spamo.release import import_checkpoint, import_checkpoint_cli, read_checkpoint, Inert
from spamo.checkpoint import load_run
from spamo.adapter import collate_features
from spamo.testing import TOY_SENTENCES, train_tokenizer, tiny_t5

torch.set_num_threads(1)
SD, MD, H, D = 12, 6, 16, 64   # spatial and motion widths, their inter_hidden, the T5 width


class TheirTemporalConv(nn.Module):
    "Their TemporalConv with conv_type 2, written from its description: K5 (no padding), BN, ReLU, P2 (floor), twice."
    def __init__(self, h):
        super().__init__()
        self.temporal_conv = nn.Sequential(nn.Conv1d(h, h, 5, stride=1, padding=0), nn.BatchNorm1d(h), nn.ReLU(inplace=True),
                                           nn.MaxPool1d(2, ceil_mode=False), nn.Conv1d(h, h, 5, stride=1, padding=0),
                                           nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.MaxPool1d(2, ceil_mode=False))


class Theirs(nn.Module):
    "The authors' module layout (FlanT5SLT), tiny: t5_model (peft LoRA on q, v), projections, temporal encoder, fusion_proj."
    def __init__(self, t5):
        super().__init__()
        self.t5_model = get_peft_model(t5, LoraConfig(r=4, lora_alpha=8, target_modules=['q', 'v'], lora_dropout=0.1,
                                                      bias='none', task_type='SEQ_2_SEQ_LM'))
        self.spatio_proj, self.spatiotemp_proj = nn.Linear(SD, H), nn.Linear(MD, H)
        self.fusion_proj = nn.Sequential(nn.Linear(H, D), nn.GELU(), nn.Linear(D, D))
        self.temporal_encoder = TheirTemporalConv(H)
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))

    def visual(self, spatial: list, motion: list):
        "Their prepare_visual_inputs (fusion 'joint') then fusion_proj: project, join per sample, pad, conv, lengths by their rule."
        s = self.spatio_proj(pad_sequence(spatial, batch_first=True)); m = self.spatiotemp_proj(pad_sequence(motion, batch_first=True))
        joint = pad_sequence([torch.cat([s[i, :len(a)], m[i, :len(b)]]) for i, (a, b) in enumerate(zip(spatial, motion))], batch_first=True)
        out = self.temporal_encoder.temporal_conv(joint.permute(0, 2, 1)).permute(0, 2, 1)
        lens = torch.tensor([len(a) + len(b) for a, b in zip(spatial, motion)], dtype=torch.float)
        lens = ((lens - 4) / 2 - 4) / 2                                   # their update_lgt: true division
        return self.fusion_proj(out), lens.to(torch.int)

    def translate(self, spatial, motion, tok, prompt, max_new_tokens=8):
        "Their prepare_inputs + generate, greedy: [visual ; prompt embeddings], lengths masked, decoded lower-cased."
        v, vl = self.visual(spatial, motion)
        t = tok([prompt] * len(spatial), padding='longest', return_tensors='pt')
        emb = self.t5_model.get_input_embeddings()(t.input_ids); pl = t.attention_mask.sum(1)
        x = pad_sequence([torch.cat([v[i, :vl[i]], emb[i, :pl[i]]]) for i in range(len(spatial))], batch_first=True)
        mask = (torch.arange(x.shape[1])[None] < (vl + pl)[:, None]).long()
        out = self.t5_model.generate(inputs_embeds=x, attention_mask=mask, num_beams=1, do_sample=False, max_new_tokens=max_new_tokens)
        return [s.strip() for s in tok.batch_decode(out, skip_special_tokens=True)]


@pytest.fixture(scope='module')
def theirs_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp('release')
    tok = train_tokenizer(TOY_SENTENCES)
    torch.manual_seed(0)
    t5, llm = tiny_t5(tok, d_model=D), d / 'flan-t5'
    t5.save_pretrained(llm); tok.save_pretrained(llm)           # the frozen LLM, before LoRA wraps it
    m = Theirs(t5).eval()
    with torch.no_grad():   # trained-looking weights: non-zero LoRA B, non-trivial norm statistics
        for n, p in m.named_parameters():
            if 'lora_B' in n: p.normal_(0, 0.2)
        for b in m.temporal_encoder.modules():
            if isinstance(b, nn.BatchNorm1d): b.running_mean.normal_(); b.running_var.uniform_(0.5, 2); b.weight.normal_(1, 0.3)
    ck = d / 'spamo.ckpt'
    torch.save({'state_dict': m.state_dict(), 'epoch': 29, 'global_step': 12345, 'pytorch-lightning_version': '2.2.1',
                'hyper_parameters': {'model_name': str(llm), 'lora_alpha': 8, 'lora_r': 4, 'inter_hidden': H,
                                     'prompt': 'Translate the given sentence into {}.', 'use_in_context': False}}, ck)
    return dict(dir=d, ckpt=ck, model=m, tok=tok)


def batch(seed=0, lengths=((20, 2), (33, 3), (14, 2))):
    g = torch.Generator().manual_seed(seed)
    spatial = [torch.randn(t, SD, generator=g) for t, _ in lengths]; motion = [torch.randn(n, MD, generator=g) for _, n in lengths]
    return spatial, motion


def test_converted_checkpoint_matches_their_forward(theirs_ckpt, tmp_path):
    rep = import_checkpoint(theirs_ckpt['ckpt'], tmp_path / 'run')
    assert rep['left_over'] == [] and rep['frozen_llm'] > 0
    model, cfg = load_run(tmp_path / 'run')
    assert (cfg.model.adapter, cfg.model.lora_r, cfg.model.lora_alpha, cfg.model.spatial_dim, cfg.model.motion_dim) == ('official', 4, 8, SD, MD)
    spatial, motion = batch()
    b = collate_features([dict(spatial=s, motion=m) for s, m in zip(spatial, motion)]) | dict(language=['de'] * 3)
    with torch.no_grad():
        ref, ref_len = theirs_ckpt['model'].visual(spatial, motion)
        z, mask = model.visual_tokens(b)
    assert mask.sum(1).tolist() == ref_len.tolist() == [2, 6, 1]
    for i, n in enumerate(ref_len.tolist()): assert torch.allclose(z[i, :n], ref[i, :n], atol=1e-5)
    ours = model.generate(b, num_beams=1, max_new_tokens=8)
    assert ours == theirs_ckpt['model'].translate(spatial, motion, theirs_ckpt['tok'], 'Translate the given sentence into German.')
    assert json.loads((tmp_path / 'run' / 'features.json').read_text())['recipe'] == 'official'


def test_leftover_keys_are_reported_and_strict_loading_refuses_missing(theirs_ckpt, tmp_path):
    sd = dict(theirs_ckpt['model'].state_dict()); sd['extra_head.weight'] = torch.zeros(2)
    sd.pop('fusion_proj.2.bias')
    torch.save({'state_dict': sd, 'hyper_parameters': {'model_name': str(theirs_ckpt['dir'] / 'flan-t5'), 'lora_alpha': 8}}, tmp_path / 'c.ckpt')
    with pytest.raises(KeyError, match='fusion_proj.2.bias'): import_checkpoint(tmp_path / 'c.ckpt', tmp_path / 'r')
    assert not (tmp_path / 'r' / 'checkpoints').exists()     # nothing written for a checkpoint that does not load


class Payload:
    "A pickle that runs a shell command when loaded naively."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))


@pytest.mark.parametrize('where', ['hyper_parameters', 'state_dict', 'top'])
def test_a_pickle_that_would_run_code_is_refused(theirs_ckpt, tmp_path, where):
    marker = tmp_path / 'it-ran'
    ck = {'state_dict': dict(theirs_ckpt['model'].state_dict()), 'hyper_parameters': {'lora_alpha': 8}}
    if where == 'top': ck['callbacks'] = Payload(marker)
    else: ck[where]['evil'] = Payload(marker)
    torch.save(ck, tmp_path / 'evil.ckpt')
    with pytest.raises(pickle.UnpicklingError, match='system.*could run code'): import_checkpoint(tmp_path / 'evil.ckpt', tmp_path / 'run')
    assert not marker.exists() and not (tmp_path / 'run').exists()
    assert import_checkpoint_cli([str(tmp_path / 'evil.ckpt'), '--out', str(tmp_path / 'run')]) == 2
    assert not marker.exists()


def test_omegaconf_hyper_parameters_are_inert_data(theirs_ckpt, tmp_path, monkeypatch):
    "OmegaConf objects in hyper_parameters are read as placeholders (omegaconf is never imported) and their values used."
    mod = types.ModuleType('omegaconf.dictconfig')
    class DictConfig(dict):
        def __reduce__(self): return (DictConfig, (), {'_content': dict(self), '_metadata': None})
        def __setstate__(self, s): self.update(s['_content'])
    DictConfig.__module__, DictConfig.__qualname__ = 'omegaconf.dictconfig', 'DictConfig'; mod.DictConfig = DictConfig
    monkeypatch.setitem(sys.modules, 'omegaconf', types.ModuleType('omegaconf')); monkeypatch.setitem(sys.modules, 'omegaconf.dictconfig', mod)
    hp = DictConfig(model_name=str(theirs_ckpt['dir'] / 'flan-t5'), lora_alpha=8)
    torch.save({'state_dict': theirs_ckpt['model'].state_dict(), 'hyper_parameters': hp}, tmp_path / 'oc.ckpt')
    monkeypatch.delitem(sys.modules, 'omegaconf.dictconfig'); monkeypatch.delitem(sys.modules, 'omegaconf')
    got = read_checkpoint(tmp_path / 'oc.ckpt')
    assert isinstance(got['hyper_parameters'], Inert) and 'omegaconf' not in sys.modules
    rep = import_checkpoint(tmp_path / 'oc.ckpt', tmp_path / 'run')
    assert rep['lora_alpha'] == 8 and rep['llm'] == str(theirs_ckpt['dir'] / 'flan-t5')


def test_not_a_checkpoint(tmp_path):
    (tmp_path / 'x.ckpt').write_bytes(b'\x80\x02}q\x00.')       # a bare pickle, not a zip archive
    with pytest.raises(ValueError, match='not a torch zip checkpoint'): read_checkpoint(tmp_path / 'x.ckpt')
