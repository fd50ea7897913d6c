"""In-context examples reach the prompt in training, evaluation and `spamo translate`, the same for the same sample."""
import json
from pathlib import Path
import pytest, torch
import spamo.model
from spamo.data import Sample, load_dataset
from spamo.prompt import PromptExamples, build_prompt, load_translations
from spamo.presets import resolve_config
from spamo.train import train
from spamo.evaluate import evaluate_run
from spamo.translate import Translator
from spamo.translations import read_info_ml, write_translations
from spamo.testing import smoke_run

torch.set_num_threads(1)


@pytest.fixture
def recorded(monkeypatch):
    "Every prompt SpaMo builds, with the batch's sample ids (or texts) beside it."
    seen, original = [], spamo.model.SpaMo.prompts
    def prompts(self, batch):
        out = original(self, batch); seen.append((list(batch.get('ids') or [None] * len(out)), list(batch.get('text') or [None] * len(out)), out))
        return out
    monkeypatch.setattr(spamo.model.SpaMo, 'prompts', prompts)
    return seen


def smoke_paths():
    out = smoke_run().parent
    return dict(data_root=str(out / 'data' / 'synthsign'), features=str(out / 'data' / 'features'), llm=str(out / 'llm'))


def cfg(tmp_path, **kw):
    return resolve_config(**smoke_paths() | dict(run_dir=str(tmp_path / 'run'), llm_dtype='fp32', precision='fp32', adapter_hidden=32,
                              vt_warmup_steps=1, max_steps=3, batch_size=4, lr_warmup_steps=1, eval_every=3, save_every=3,
                              num_beams=1, max_new_tokens=6) | kw)


def test_examples_reach_training_evaluation_and_translate(tmp_path, recorded):
    train_samples = load_dataset('phoenix14t', smoke_paths()['data_root'], 'train')
    side = write_translations({s.id: {'en': f'english {i}', 'fr': f'français {i}'} for i, s in enumerate(train_samples)}, tmp_path / 'tr.jsonl')
    c = cfg(tmp_path, translations=str(side), num_examples=1)
    recorded.clear()                                        # (building the shared smoke run prompts without examples)
    train(c, progress=False)
    trained = [(t, p) for ids, texts, ps in recorded for t, p in zip(texts, ps) if t is not None]
    assert trained and all(' english ' in p and '=' in p for _, p in trained)          # every training prompt has its example
    own = {s.text for s in train_samples}
    for text, p in trained:                                                          # never the sample's own sentence
        example_targets = {part.split('=')[1].rsplit(' english', 1)[0].rsplit(' français', 1)[0] for part in p.split(' english ')[1:]}
        assert text not in example_targets and example_targets <= own
    recorded.clear()
    res = evaluate_run(c.train.run_dir, 'test', num_beams=1, progress=False, verbose=False)
    at_eval = {i: p for ids, _, ps in recorded for i, p in zip(ids, ps)}
    assert set(at_eval) == set(res['ids']) and all('english' in p for p in at_eval.values())
    test_sample = load_dataset('phoenix14t', smoke_paths()['data_root'], 'test')[0]
    recorded.clear()
    out = Translator.from_run(c.train.run_dir, progress=False)([test_sample.video], ids=[test_sample.id])
    assert out[0].error is None
    assert recorded[-1][2] == [at_eval[test_sample.id]]                              # the same prompt as in evaluation


def test_examples_without_translations_refuse_to_start(tmp_path):
    with pytest.raises(ValueError, match='spamo translations'): train(cfg(tmp_path, num_examples=1, translations=''), progress=False)
    assert not (tmp_path / 'run').exists()
    (tmp_path / 'empty.jsonl').write_text('')
    with pytest.raises(ValueError, match='none in'): train(cfg(tmp_path, num_examples=1, translations=str(tmp_path / 'empty.jsonl')), progress=False)


def test_the_authors_info_files_reach_a_prompt(shared_data, tmp_path):
    "Their dev/test info files load with the restricted reader; their en/es/fr translations become the prompt's examples."
    info = read_info_ml(shared_data / 'spamo_official' / 'test_info_ml.npy')
    assert len(info) == 642 and all({'en', 'es', 'fr'} <= set(v) for v in list(info.values())[:20])
    tr = load_translations(write_translations(info, tmp_path / 'tr.jsonl'))
    pool = [Sample(i, '', v['text'], 'de', 'train') for i, v in list(info.items())[:50]]   # treated as a training pool here
    ex = PromptExamples(pool, translations=tr, k=1)(Sample('x', '', 'ein satz', 'de', 'test'))
    prompt = build_prompt('de', ex)
    picked = next(v for v in info.values() if v['text'] == ex[0][1])
    assert [s for s, _ in ex] == [picked['en'], picked['es'], picked['fr']]
    assert prompt.startswith('Translate the given sentence into German. ') and f"{picked['fr']}={picked['text']}" in prompt


def test_targets_the_tokenizer_cannot_spell_are_refused(tmp_path):
    "A Chinese target with a Latin-only tokenizer stops training at its start; a tokenizer that covers it trains."
    from spamo.features import extract
    from spamo.testing import toy_manifest, tiny_llm, TOY_SENTENCES, train_tokenizer, tiny_t5
    zh = ['今天天气很好', '明天下雨', '我们在北方', '你喜欢雪吗', '风很大', '天气冷']
    man = toy_manifest(tmp_path / 'toy', lengths=(12, 16, 17, 20, 24, 30))
    lines = man.read_text().splitlines()
    man.write_text('\n'.join([lines[0]] + [l.replace(f'toy sentence {i},de', f'{zh[i]},zh') for i, l in enumerate(lines[1:])]) + '\n', encoding='utf-8')
    samples = load_dataset('manifest', man, 'train')
    assert [s.text for s in samples] == zh and samples[0].language == 'zh'
    extract(samples, tmp_path / 'features', 'tiny', 'tiny', progress=False, recipe='spamo')
    def run(llm, name):
        return resolve_config(dataset='manifest', data_root=str(man), features=str(tmp_path / 'features'), dev_split='train',
                                  llm=str(llm), llm_dtype='fp32', precision='fp32', adapter_hidden=16, num_examples=0, run_dir=str(tmp_path / name),
                                  vt_warmup_steps=0, max_steps=1, batch_size=2, lr_warmup_steps=1, eval_every=1, save_every=1,
                                  num_beams=1, max_new_tokens=4)
    latin = tiny_llm(TOY_SENTENCES, tmp_path / 'latin', steps=1)
    with pytest.raises(ValueError, match='unknown to .*tokenizer.*今天天气很好'): train(run(latin, 'r1'), progress=False)
    tok = train_tokenizer(TOY_SENTENCES + zh); both = tmp_path / 'both'
    tiny_t5(tok, d_model=32).save_pretrained(both); tok.save_pretrained(both)
    assert train(run(both, 'r2'), progress=False)['steps'] == 1


class Payload:
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): import os; return (os.system, (f'touch {self.marker}',))


def test_an_info_file_whose_pickle_would_run_code_is_refused(tmp_path):
    import numpy as np, pickle
    marker = tmp_path / 'it-ran'
    np.save(tmp_path / 'train_info_ml.npy', np.array({'prefix': '', 0: {'fileid': 'a', 'text': 'x', 'en_text': Payload(marker)}}, dtype=object),
            allow_pickle=True)
    with pytest.raises(pickle.UnpicklingError, match='refused .*system'): read_info_ml(tmp_path / 'train_info_ml.npy')
    assert not marker.exists()
    from spamo.translations import translations_cli
    assert translations_cli(['--from-info', str(tmp_path / 'train_info_ml.npy'), '--out', str(tmp_path / 't.jsonl')]) == 2
    assert not marker.exists() and not (tmp_path / 't.jsonl').exists()
