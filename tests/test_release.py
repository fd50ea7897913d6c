"""The authors' checkpoint, laid out as spamo.ckpt is: converted without running its pickle, loaded strictly, translating as their
forward does, with their prompt: three example pairs in en, fr, es order, cut at 512 tokens."""
import json, math, os, pickle, sys, types
from pathlib import Path
import pytest, torch
from torch import nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence
from peft import LoraConfig, get_peft_model
from transformers import AutoTokenizer
from spamo.release import import_checkpoint, import_checkpoint_cli, read_checkpoint, read_info_ml, example_languages, Inert
from spamo.checkpoint import load_run
from spamo.data import Sample, load_dataset
from spamo.model import prompt_examples
from spamo.presets import FIELD_TYPES
from spamo.prompt import build_prompt, load_translations
from spamo.train import run_samples, target_text
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
        self.t5_model = get_peft_model(t5, LoraConfig(r=4, lora_alpha=32, target_modules=['q', 'v'], lora_dropout=0.1,
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

    def translate(self, spatial, motion, tok, prompts: list, max_new_tokens=8):
        "Their prepare_inputs + generate, greedy: [visual ; prompt embeddings], lengths masked, decoded lower-cased."
        v, vl = self.visual(spatial, motion)
        t = tok(prompts, padding='longest', truncation=True, return_tensors='pt')   # truncation at model_max_length, as theirs
        emb = self.t5_model.get_input_embeddings()(t.input_ids); pl = t.attention_mask.sum(1)
        x = pad_sequence([torch.cat([v[i, :vl[i]], emb[i, :pl[i]]]) for i in range(len(spatial))], batch_first=True)
        mask = (torch.arange(x.shape[1])[None] < (vl + pl)[:, None]).long()
        out = self.t5_model.generate(inputs_embeds=x, attention_mask=mask, num_beams=1, do_sample=False, max_new_tokens=max_new_tokens)
        return [s.strip() for s in tok.batch_decode(out, skip_special_tokens=True)]


LIGHTNING_19_KEYS = {'epoch', 'global_step', 'pytorch-lightning_version', 'state_dict', 'loops', 'callbacks', 'optimizer_states', 'lr_schedulers'}
# what pytorch_lightning 1.9.5 (their requirements.txt) writes for a module that never calls save_hyperparameters, trained at
# bf16 with their callbacks (LearningRateMonitor, ModelCheckpoint and EarlyStopping on val/bleu4): read from a checkpoint that
# Lightning 1.9.5 itself wrote, December 2026. No hyper_parameters; bf16 adds no precision-plugin entry.


def lightning_19(model: nn.Module, epoch: int = 29, step: int = 12345) -> dict:
    "A checkpoint as Lightning 1.9.5 saves theirs: the module's state_dict, loop progress, callback states, AdamW and LambdaLR states."
    import functools
    params = [p.detach().clone().requires_grad_() for p in model.parameters() if p.requires_grad]   # copies: the model keeps its weights
    opt = torch.optim.AdamW(params, lr=6e-4, eps=1e-8, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(lambda s, warm: min(1.0, s / warm), warm=10))   # a partial, as get_cosine_schedule_with_warmup's
    sum(p.sum() for p in params).backward(); opt.step(); sched.step(); opt.zero_grad()
    prog = lambda n, *more: {'current': dict.fromkeys(('ready', 'completed') + more, n), 'total': dict.fromkeys(('ready', 'completed') + more, n)}
    batch = lambda n: {'current': prog(n, 'started', 'processed')['current'], 'total': prog(n, 'started', 'processed')['total'], 'is_last_batch': True}
    eval_loop = lambda n: {'state_dict': {}, 'dataloader_progress': prog(n), 'epoch_loop.state_dict': {}, 'epoch_loop.batch_progress': batch(n)}
    fit = {'state_dict': {}, 'epoch_loop.state_dict': {'_batches_that_stepped': step}, 'epoch_loop.batch_progress': batch(2 * step),
           'epoch_loop.scheduler_progress': prog(step), 'epoch_loop.batch_loop.state_dict': {}, 'epoch_loop.batch_loop.optimizer_loop.state_dict': {},
           'epoch_loop.batch_loop.optimizer_loop.optim_progress': {'optimizer': {'step': prog(step), 'zero_grad': prog(step, 'started')}, 'optimizer_position': 1},
           'epoch_loop.batch_loop.manual_loop.state_dict': {}, 'epoch_loop.batch_loop.manual_loop.optim_step_progress': prog(0),
           'epoch_loop.val_loop.state_dict': {}, 'epoch_loop.val_loop.dataloader_progress': prog(epoch // 2),
           'epoch_loop.val_loop.epoch_loop.state_dict': {}, 'epoch_loop.val_loop.epoch_loop.batch_progress': batch(81), 'epoch_progress': prog(epoch, 'started', 'processed')}
    best = f'logs/checkpoints/epoch={epoch:05}-step={step:07}-bleu4=24.32.ckpt'
    return {'epoch': epoch, 'global_step': step, 'pytorch-lightning_version': '1.9.5', 'state_dict': model.state_dict(),
            'loops': {'fit_loop': fit, 'validate_loop': eval_loop(0), 'test_loop': eval_loop(0), 'predict_loop': eval_loop(0)},
            'callbacks': {"ModelCheckpoint{'monitor': 'val/bleu4', 'mode': 'max', 'every_n_train_steps': 0, 'every_n_epochs': 1, 'train_time_interval': None}":
                              {'monitor': 'val/bleu4', 'best_model_score': torch.tensor(24.32), 'best_model_path': best, 'current_score': torch.tensor(24.32),
                               'dirpath': 'logs/checkpoints', 'best_k_models': {best: torch.tensor(24.32)}, 'kth_best_model_path': best,
                               'kth_value': torch.tensor(24.32), 'last_model_path': ''},
                          "EarlyStopping{'monitor': 'val/bleu4', 'mode': 'max'}": {'wait_count': 3, 'stopped_epoch': 0, 'best_score': torch.tensor(24.32), 'patience': 50}},
            'optimizer_states': [opt.state_dict()], 'lr_schedulers': [sched.state_dict()]}


TRAIN_TEXTS = ['am tag regen im norden', 'morgen schnee im süden', 'sonne und wolken im westen', 'in der nacht frost']


def info_file(path, texts=TRAIN_TEXTS, split='train', long: int = 0):
    "An info file in the authors' layout (`<split>_info_ml.npy`): a 'prefix' key and samples 0..N-1 with en/es/fr translations."
    import numpy as np
    info = {'prefix': './dataset/Phoenix14T/features/fullFrame-210x260px'}
    for i, t in enumerate(texts):
        es = ' '.join([f'español {i}'] * (long or 1))
        info[i] = dict(fileid=f'{split}-{i}', folder=f'{split}/{split}-{i}/*.png', signer='Signer01', gloss='REGEN', text=t, num_frames=str(40 + i),
                       original_info='', tag='phoenix14t', en_text=f'english {i}', es_text=es, fr_text=f'français {i}')
    np.save(path, np.array(info, dtype=object), allow_pickle=True)
    return info


@pytest.fixture(scope='module')
def theirs_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp('release')
    tok = train_tokenizer(TOY_SENTENCES)
    tok.model_max_length = 512                                  # as Flan-T5's tokenizer_config.json has it
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
    torch.save(lightning_19(m), ck)                             # no hyper_parameters: their module never saves them
    info = info_file(d / 'train_info_ml.npy')
    return dict(dir=d, ckpt=ck, model=m, tok=tok, llm=llm, info=info, info_file=d / 'train_info_ml.npy')


def batch(seed=0, lengths=((20, 2), (33, 3), (14, 2))):
    g = torch.Generator().manual_seed(seed)
    spatial = [torch.randn(t, SD, generator=g) for t, _ in lengths]; motion = [torch.randn(n, MD, generator=g) for _, n in lengths]
    return spatial, motion


def their_examples(entry: dict, langs=('en', 'fr', 'es')) -> str:
    "Their examples string for one info-file sample (t5_slt.py:349-355): `{en_text}={text} ...`, the text as dataset/p14t.py normalises it."
    t = entry['text'].strip(); t = t if t.endswith('.') else t + '.'
    return ' '.join(f"{entry[f'{l}_text']}={t}" for l in langs)


def pool(info: dict, split='train') -> list:
    "The samples of an info file as a training split, their targets as `targets: official` makes them."
    return [Sample(v['fileid'], '', target_text(v['text'], 'official'), 'de', split) for k, v in info.items() if k != 'prefix']


def picked(info: dict, pairs: list) -> dict:
    "The info-file sample whose sentence `PromptExamples` picked (by its target, the right side of every pair)."
    (target,) = {t for _, t in pairs}
    return next(v for k, v in info.items() if k != 'prefix' and target_text(v['text'], 'official') == target)


def imported(theirs_ckpt, out, **kw):
    rep = import_checkpoint(theirs_ckpt['ckpt'], out, llm=str(theirs_ckpt['llm']), **kw)
    return (rep, *load_run(out))


def test_converted_checkpoint_matches_their_forward(theirs_ckpt, tmp_path):
    "With their examples in the prompt, spamo's translation of the imported run equals their module's, token for token."
    rep, model, cfg = imported(theirs_ckpt, tmp_path / 'run', translations=theirs_ckpt['info_file'])
    assert rep['left_over'] == [] and rep['frozen_llm'] > 0
    assert (cfg.model.adapter, cfg.model.lora_r, cfg.model.lora_alpha, cfg.model.spatial_dim, cfg.model.motion_dim) == ('official', 4, 32, SD, MD)
    spatial, motion = batch()
    tests = [Sample(f'test-{i}', '', 'regen.', 'de', 'test') for i in range(3)]
    examples = prompt_examples(cfg, pool(theirs_ckpt['info']))
    b = collate_features([dict(spatial=s, motion=m) for s, m in zip(spatial, motion)]) | dict(language=['de'] * 3, examples=[examples(t) for t in tests])
    with torch.no_grad():
        ref, ref_len = theirs_ckpt['model'].visual(spatial, motion)
        z, mask = model.visual_tokens(b)
    assert mask.sum(1).tolist() == ref_len.tolist() == [2, 6, 1]
    for i, n in enumerate(ref_len.tolist()): assert torch.allclose(z[i, :n], ref[i, :n], atol=1e-5)
    ours = model.generate(b, num_beams=1, max_new_tokens=8)
    prompts = [f"Translate the given sentence into German. {their_examples(picked(theirs_ckpt['info'], e), example_languages(cfg))}" for e in b['examples']]
    assert ours == theirs_ckpt['model'].translate(spatial, motion, theirs_ckpt['tok'], prompts)
    assert json.loads((tmp_path / 'run' / 'features.json').read_text())['recipe'] == 'official'


def test_the_test_checkpoint_is_laid_out_as_theirs(theirs_ckpt):
    "Lightning 1.9.5's keys, no hyper_parameters: what spamo.ckpt holds, since their module never calls save_hyperparameters."
    ck = read_checkpoint(theirs_ckpt['ckpt'])
    assert set(ck) == LIGHTNING_19_KEYS and 'hyper_parameters' not in ck and ck['pytorch-lightning_version'] == '1.9.5'
    assert any(k.startswith('t5_model.base_model.model.') and 'lora_A' in k for k in ck['state_dict'])
    assert ck['optimizer_states'][0]['param_groups'][0]['betas'] == (0.9, 0.98) and ck['lr_schedulers'][0]['lr_lambdas'] == [{}]


def test_without_translations_the_import_says_what_is_missing(theirs_ckpt, tmp_path, capsys):
    "Their checkpoint needs its examples: refused, naming --translations and their file, nothing written; --num-examples 0 opts out."
    with pytest.raises(ValueError, match=r'3 example pair.*en, fr, es.*--translations FILE.*train_info_ml\.npy.*--num-examples 0'):
        import_checkpoint(theirs_ckpt['ckpt'], tmp_path / 'run', llm=str(theirs_ckpt['llm']))
    assert not (tmp_path / 'run').exists()
    args = [str(theirs_ckpt['ckpt']), '--llm', str(theirs_ckpt['llm']), '--out']
    assert import_checkpoint_cli(args + [str(tmp_path / 'run')]) == 2
    err = capsys.readouterr().err
    assert '--translations FILE' in err and 'train_info_ml.npy' in err and not (tmp_path / 'run').exists()
    assert import_checkpoint_cli(args + [str(tmp_path / 'run0'), '--num-examples', '0']) == 0
    assert load_run(tmp_path / 'run0')[1].model.num_examples == 0
    assert json.loads((tmp_path / 'run0' / 'import.json').read_text())['prompt']['num_examples'] == 0
    (tmp_path / 'only_en.jsonl').write_text('{"id": "train-0", "en": "english 0"}\n')
    with pytest.raises(ValueError, match="none of its 1 samples has all of"):
        import_checkpoint(theirs_ckpt['ckpt'], tmp_path / 'run1', llm=str(theirs_ckpt['llm']), translations=tmp_path / 'only_en.jsonl')


def test_the_imported_run_has_their_prompt(theirs_ckpt, tmp_path):
    "Their settings in config.json, their examples string in the prompt, their tokenizer's cut at 512 tokens with </s> last."
    long_info = info_file(tmp_path / 'train_info_ml.npy', long=300)               # Spanish translations far over 512 tokens
    rep, model, cfg = imported(theirs_ckpt, tmp_path / 'run', translations=tmp_path / 'train_info_ml.npy')
    assert (cfg.model.num_examples, cfg.model.max_prompt_len, cfg.data.targets) == (1, 512, 'official')
    assert Path(cfg.data.translations) == (tmp_path / 'run' / 'translations.jsonl').resolve()
    assert load_translations(cfg.data.translations)['train-1'] == {'en': 'english 1', 'es': long_info[1]['es_text'], 'fr': 'français 1'}
    assert rep['prompt'] | {'languages': None} == dict(num_examples=1, languages=None, max_prompt_len=512, targets='official', samples=4,
                                                       with_every_language=4, settings_from=rep['prompt']['settings_from'])
    assert 'finetune.yaml' in rep['prompt']['settings_from']
    pairs = prompt_examples(cfg, pool(long_info))(Sample('test-0', '', 'regen.', 'de', 'test'))
    prompt, entry = build_prompt('de', pairs), picked(long_info, pairs)
    assert prompt == f"Translate the given sentence into German. {their_examples(entry, example_languages(cfg))}"
    assert sorted(s for s, _ in pairs) == sorted(entry[f'{l}_text'] for l in ('en', 'fr', 'es'))   # the three translations of one sentence
    their_tok = AutoTokenizer.from_pretrained(theirs_ckpt['llm'], max_length=64)    # as t5_slt.py:157-161 loads it
    ids, mask = model.tokens([prompt], cfg.model.max_prompt_len)
    assert ids[0].tolist() == their_tok([prompt], padding='longest', truncation=True).input_ids[0]
    assert ids.shape[1] == 512 < len(model.tokenizer(prompt).input_ids)                  # cut: the prompt is longer
    assert ids[0, -1].item() == model.tokenizer.eos_token_id


def need_example_languages():
    if 'example_languages' not in FIELD_TYPES:
        pytest.xfail('ModelConfig has no example_languages field, so PromptExamples sorts the languages (en, es, fr): '
                     'the change in nbs/05_config, 05a_model and 05_presets asked for in issue 22 item 4')


def test_the_examples_are_in_their_language_order(theirs_ckpt, tmp_path):
    "en, fr, es, as their get_inputs lists them (t5_slt.py:349-353), not sorted."
    need_example_languages()
    rep, model, cfg = imported(theirs_ckpt, tmp_path / 'run', translations=theirs_ckpt['info_file'])
    assert cfg.model.example_languages == 'en,fr,es' and rep['prompt']['languages'] == ['en', 'fr', 'es']
    pairs = prompt_examples(cfg, pool(theirs_ckpt['info']))(Sample('test-0', '', 'regen.', 'de', 'test'))
    entry = picked(theirs_ckpt['info'], pairs)
    assert [s for s, _ in pairs] == [entry['en_text'], entry['fr_text'], entry['es_text']]
    prompt = build_prompt('de', pairs)
    assert prompt.index(entry['en_text']) < prompt.index(entry['fr_text']) < prompt.index(entry['es_text'])


def test_a_training_split_without_translations_is_refused(theirs_ckpt, tmp_path):
    "Given the dataset's root, the import checks the training split, where the examples come from, has translations."
    corpus = tmp_path / 'corpus'; corpus.mkdir()
    for split, texts in (('train', TRAIN_TEXTS), ('dev', ['dev satz'])):
        rows = [f'{split}-{i}|{split}-{i}/1/*.png|-1|-1|Signer01|REGEN|{t}' for i, t in enumerate(texts)]
        (corpus / f'PHOENIX-2014-T.{split}.corpus.csv').write_text('\n'.join(['name|video|start|end|speaker|orth|translation'] + rows) + '\n')
    info_file(tmp_path / 'dev_info_ml.npy', ['dev satz'], split='dev')
    with pytest.raises(ValueError, match=r"none of the 4 train samples of phoenix14t .*train_info_ml\.npy"):
        imported(theirs_ckpt, tmp_path / 'r', translations=tmp_path / 'dev_info_ml.npy', data_root=str(corpus))
    rep, _, cfg = imported(theirs_ckpt, tmp_path / 'r2', translations=[tmp_path / 'dev_info_ml.npy', theirs_ckpt['info_file']], data_root=str(corpus))
    assert (rep['prompt']['training_samples'], rep['prompt']['samples']) == (4, 5)
    pairs = prompt_examples(cfg, run_samples(cfg.data, 'train'))(Sample('test-0', '', 'regen.', 'de', 'test'))
    assert {t for _, t in pairs} <= {target_text(t, 'official') for t in TRAIN_TEXTS}   # the examples' targets as theirs: ending in '.'


def test_their_real_info_files_give_their_prompt(shared_data, tmp_path, theirs_ckpt):
    "Their dev and test files (the train file is not in shared data) through the command line; a real test sample's prompt is theirs."
    real, corpus = shared_data / 'spamo_official', shared_data / 'phoenix14t' / 'reconstructed_corpus_csv'
    if not (real / 'dev_info_ml.npy').exists(): pytest.skip(f'the authors\' info files are not in {real}')
    args = [str(theirs_ckpt['ckpt']), '--llm', str(theirs_ckpt['llm']), '--translations', str(real / 'dev_info_ml.npy'), str(real / 'test_info_ml.npy')]
    assert import_checkpoint_cli(args + ['--out', str(tmp_path / 'r'), '--root', str(corpus)]) == 2          # no training sample has them
    assert import_checkpoint_cli(args + ['--out', str(tmp_path / 'run')]) == 0
    cfg = load_run(tmp_path / 'run')[1]
    tr = load_translations(cfg.data.translations)
    assert len(tr) == 519 + 642 and all(set(v) == {'en', 'es', 'fr'} for v in tr.values())
    dev_info = read_info_ml(real / 'dev_info_ml.npy')
    dev = [Sample(s.id, '', target_text(s.text, 'official'), 'de', 'train') for s in load_dataset('phoenix14t', corpus, 'dev')]   # dev as the pool
    sample = load_dataset('phoenix14t', corpus, 'test')[0]
    pairs = prompt_examples(cfg, dev)(sample)
    (sid,) = {s.id for s in dev if s.text == pairs[0][1]}
    entry = {'text': dev_info[sid]['text']} | {f'{l}_text': dev_info[sid][l] for l in ('en', 'es', 'fr')}
    assert build_prompt('de', pairs) == f"Translate the given sentence into German. {their_examples(entry, example_languages(cfg))}"
    assert sorted(s for s, _ in pairs) == sorted(entry[f'{l}_text'] for l in ('en', 'fr', 'es'))


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
