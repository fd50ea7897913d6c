"""spamo.llm: LoRA freezing, loading by path, the prompt and its examples (no leakage), SpaMo learning a toy task."""
import copy, os, random
import pytest, torch
from spamo.data import Sample
from spamo.adapter import SignAdapter
from spamo.llm import prepare_llm, load_llm, join_tokens
from spamo.prompt import build_prompt, PromptExamples, load_translations
from spamo.model import SpaMo
from spamo.testing import train_tokenizer, tiny_t5, pretrain_denoiser, toy_batch

torch.set_num_threads(1)  # tiny models: extra threads on a busy 2-core machine cost more than they give
SENTS = ['am montag regnet es im norden.', 'morgen scheint die sonne im süden.',
         'heute gibt es schnee in den bergen.', 'dort ist bodenfrost möglich.']

@pytest.fixture(scope='module')
def tok(): return train_tokenizer(SENTS, kind='wordlevel')

def toy_spamo(tok, lora=True, blind=False, seed=0):
    torch.manual_seed(seed)
    llm, _ = pretrain_denoiser(tiny_t5(tok, dropout=0.0), tok, SENTS, steps=40, batch_size=8, lr=3e-3, seed=seed)
    return SpaMo(SignAdapter(32, 16, 128, hidden=64), prepare_llm(llm, lora=lora), tok, blind=blind)

def test_tokenizer_is_t5_shaped():
    t = train_tokenizer(SENTS)  # default BPE
    assert (t.pad_token_id, t.eos_token_id, t.unk_token_id) == (0, 1, 2)
    ids = t(SENTS[1]).input_ids
    assert ids[-1] == 1 and t.decode(ids, skip_special_tokens=True) == SENTS[1]
    assert len(t) > 10  # not the 4-token vocabulary T5Tokenizer(vocab_file=...) silently gives

def test_lora_trains_only_lora(tok):
    m = prepare_llm(tiny_t5(tok))
    names = [n for n, p in m.named_parameters() if p.requires_grad]
    assert names and all('lora_' in n for n in names)
    assert {n.split('.')[-4] for n in names} == {'q', 'v'}
    assert not any(p.requires_grad for p in prepare_llm(tiny_t5(tok), lora=False).parameters())
    s = SpaMo(SignAdapter(32, 16, 128, hidden=64), prepare_llm(tiny_t5(tok), lora=False), tok)
    assert {n.split('.')[0] for n, p in s.named_parameters() if p.requires_grad} == {'adapter', 'temperature'}

def test_load_llm_from_local_directory(tok, tmp_path):
    llm = tiny_t5(tok)
    llm.save_pretrained(tmp_path); tok.save_pretrained(tmp_path)
    m, t = load_llm(str(tmp_path))
    assert next(m.parameters()).dtype == torch.bfloat16
    assert t(SENTS[2]).input_ids == tok(SENTS[2]).input_ids
    assert torch.equal(m.get_base_model().shared.weight, llm.shared.weight.detach().bfloat16())
    assert all('lora_' in n for n, p in m.named_parameters() if p.requires_grad)
    m, _ = load_llm(str(tmp_path), dtype=torch.float32, lora=False)
    assert next(m.parameters()).dtype == torch.float32 and not any(p.requires_grad for p in m.parameters())
    with pytest.raises(FileNotFoundError, match='no_such_llm'): load_llm(str(tmp_path / 'no_such_llm'))
    with pytest.raises(OSError, match='Hugging Face hub'): load_llm('not a valid name!!')

def test_prompt_follows_table_8():
    trg = 'dort sowie in den südlichen mittelgebirgen ist bodenfrost möglich.'
    ex = [('Soil frost is possible there.', trg), ('Le gel du sol est possible là-bas.', trg)]
    assert build_prompt('de', ex) == ('Translate the given sentence into German. Soil frost is possible there.=' + trg
                                      + ' Le gel du sol est possible là-bas.=' + trg)
    assert build_prompt('en') == 'Translate the given sentence into English.'
    with pytest.raises(ValueError): build_prompt('xx')

def _sample(i, text, split, tr=None):
    return Sample(id=i, video=f'{i}.mp4', text=text, language='de', split=split,
                  extra={'translations': tr} if tr else {})

def test_examples_come_from_training_and_never_show_the_target():
    train = [_sample(f't{i}', f'satz {i % 7}.', 'train', {'en': f'sentence {i % 7}.', 'fr': f'phrase {i % 7}.'})
             for i in range(30)]
    test = [_sample(f'x{i}', f'testsatz {i}.', 'test') for i in range(10)] + [_sample('x10', 'satz 3.', 'test')]
    pe = PromptExamples(train, k=2)
    train_texts = {s.text for s in train}
    for s in test:
        ex = pe(s)
        assert len(ex) == 4 and ex == pe(s) == PromptExamples(train, k=2)(s)   # deterministic at evaluation
        assert all(t in train_texts for _, t in ex)                          # only training sentences
        assert not any(t.startswith('testsatz') for _, t in ex)              # never an evaluated reference
    pe.rng = random.Random(1)
    for s in train:
        for _ in range(10): assert all(t != s.text for _, t in pe(s, train=True))
    with pytest.raises(ValueError, match='training split'): PromptExamples(train + test)
    assert PromptExamples(train, translations={})(test[0]) == []

def test_load_translations(tmp_path):
    (tmp_path / 'tr.tsv').write_text('id\ten\tes\na\tIt rains.\tLlueve.\n', encoding='utf-8')
    (tmp_path / 'tr.jsonl').write_text('{"id": "a", "translations": {"fr": "Il pleut."}}\n', encoding='utf-8')
    assert load_translations(tmp_path / 'tr.tsv') == {'a': {'en': 'It rains.', 'es': 'Llueve.'}}
    assert load_translations(tmp_path / 'tr.jsonl') == {'a': {'fr': 'Il pleut.'}}
    samples = [_sample('a', 'es regnet.', 'train'), _sample('b', 'sonne.', 'train')]
    assert PromptExamples(samples, translations=load_translations(tmp_path / 'tr.tsv'))(_sample('z', 'x', 'dev')) == \
        [('It rains.', 'es regnet.'), ('Llueve.', 'es regnet.')]

def test_join_tokens_keeps_real_tokens_contiguous():
    s, sm = torch.randn(2, 3, 4), torch.tensor([[1, 1, 0], [1, 0, 0]])
    p, pm = torch.randn(2, 2, 4), torch.tensor([[1, 1], [1, 0]])
    x, m = join_tokens(s, sm, p, pm)
    assert m.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert torch.equal(x[1, :2], torch.stack([s[1, 0], p[1, 0]]))

def test_warmup_updates_only_the_adapter(tok):
    model = toy_spamo(tok)
    out = model(toy_batch(8, SENTS), stage='warmup')
    assert out['ce'] is None and out['loss'] is out['vt']
    out['loss'].backward()
    assert all(p.grad is None for n, p in model.named_parameters() if 'lora_' in n)
    assert model.temperature.logit_scale.grad is not None

def test_spamo_learns_toy_task(tok):
    model = toy_spamo(tok)
    untrained = copy.deepcopy(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train(); ce = []
    for i in range(30):
        out = model(toy_batch(8, SENTS, seed=i))
        assert torch.isclose(out['loss'], out['ce'] + model.lam * out['vt'])
        opt.zero_grad(); out['loss'].backward(); opt.step(); ce.append(out['ce'].item())
    ev = toy_batch(12, SENTS, seed=999)
    hyp = model.generate(ev, num_beams=3, max_new_tokens=16)
    acc = sum(h == t for h, t in zip(hyp, ev['text'])) / len(hyp)
    assert ce[-1] < 0.3 * ce[0] and acc >= 0.9, (ce[0], ce[-1], hyp)
    assert model.generate(ev, num_beams=3, max_new_tokens=16) == hyp           # deterministic
    sd = model.trainable_state_dict()
    assert all(k.startswith(('adapter.', 'temperature.')) or 'lora_' in k for k in sd)
    assert untrained.load_trainable(sd).generate(ev, num_beams=3, max_new_tokens=16) == hyp
    rm = [k for k in sd if k.endswith('running_mean')]
    assert rm and all(torch.equal(untrained.state_dict()[k], model.state_dict()[k]) for k in rm)  # norm statistics too
    assert not any(k.startswith('llm.') and 'lora_' not in k for k in sd)
    with pytest.raises(KeyError, match='missing'): untrained.load_trainable(dict(list(sd.items())[1:]))

@pytest.mark.skipif(not os.environ.get('SPAMO_SLOW'), reason='Flan-T5-XL shape: ~7 GB and ~1-2 min on CPU; set SPAMO_SLOW=1')
def test_flan_t5_xl_shape_one_step(tok):
    from transformers import T5Config, T5ForConditionalGeneration
    from spamo.adapter import collate_features
    cfg = T5Config(vocab_size=32128, d_model=2048, d_kv=64, d_ff=5120, num_layers=24, num_decoder_layers=24, num_heads=32,
                   feed_forward_proj='gated-gelu', pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.set_default_dtype(torch.bfloat16)
    try: xl = T5ForConditionalGeneration(cfg)
    finally: torch.set_default_dtype(torch.float32)
    model = SpaMo(SignAdapter(2048, 1024, 2048, hidden=1024), prepare_llm(xl), tok)
    b = collate_features([dict(spatial=torch.randn(228, 2048), motion=torch.randn(28, 1024))]) | dict(text=SENTS[:1], language=['de'])
    assert model.visual_tokens(b)[0].shape == (1, 64, 2048)
    out = model(b); out['loss'].backward()
    assert out['loss'].isfinite() and all(p.grad is not None for n, p in model.named_parameters() if 'lora_' in n)
