"""Fast evaluation and the authors' evaluation protocol (issues 26 item 2, 22 item 6).

Length-sorted batches at any batch size give the hypotheses of one sentence at a time (seq2seq: right padding;
causal: left padding); eval_protocol 'official' samples as the authors' generate call did, reproducibly for a seed,
takes its examples from other samples of the same batch, and is labelled in metrics.json and in the printout."""
import contextlib, io, json, shutil, warnings
from pathlib import Path
import pytest, torch
import spamo.model
from spamo.checkpoint import load_run
from spamo.config import ModelConfig
from spamo.data import load_dataset
from spamo.evaluate import evaluate_cli, evaluate_run
from spamo.model import FeatureData, PromptExamples, build_model, translate_data
from spamo.store import FeatureStore
from spamo.testing import smoke_run
from spamo.tiny import tiny_decoder

torch.set_num_threads(1)


def smoke_data():
    "The smoke run's model and all 40 of its SynthSign samples (train, dev, test) with their features."
    model, cfg = load_run(smoke_run())
    samples = [s for split in ('train', 'dev', 'test') for s in load_dataset(cfg.data.dataset, cfg.data.data_root, split)]
    return model, cfg, FeatureData(samples, FeatureStore(cfg.data.features))


def batchings(model, data, examples=None, **kw) -> list:
    "Hypotheses of batch sizes 1 and 4 (and all at once), unsorted and sorted, each against one sentence at a time."
    alone = translate_data(model, data, examples, batch_size=1, sort=False, **kw)
    for bs in (1, 4, len(data)):
        for sort in (False, True):
            got = translate_data(model, data, examples, batch_size=bs, sort=sort, **kw)
            assert got == alone, (bs, sort, [(a, b) for a, b in zip(got, alone) if a != b][:3])
    return alone


def test_sorted_batches_give_the_same_hypotheses_seq2seq():
    "T5 (right padding), with in-context examples of different lengths: sorted and unsorted batches agree with batch 1."
    model, cfg, data = smoke_data()
    train = [s for s in data.samples if s.split == 'train']
    pe = PromptExamples(train, {s.id: {'en': ' '.join(['word'] * (1 + i % 7))} for i, s in enumerate(train)}, k=1)
    lens = [data.visual_length(i) for i in range(len(data))]
    assert len(set(lens)) > 20                                   # lengths differ: sorting reorders
    hyps = batchings(model, data, pe, num_beams=5, max_new_tokens=16)
    assert len(set(hyps)) >= 5, hyps                             # the sentences differ: the comparison means something


def test_sorted_batches_give_the_same_hypotheses_causal(tmp_path):
    "A pretrained tiny Llama (left padding in generation) with a sign adapter: the same in any batching."
    _, cfg, data = smoke_data()
    llm = tiny_decoder([s.text for s in data.samples], tmp_path / 'llm', steps=30)
    torch.manual_seed(0)
    st = data.store
    model = build_model(ModelConfig(llm=str(llm), llm_family='causal', llm_dtype='fp32', adapter_hidden=32, connector='linear',
                                    spatial_dim=st.spatial_dim, motion_dim=st.motion_dim))
    with torch.no_grad():
        for p in model.adapter.parameters(): p.mul_(3)           # random adapter, louder: the sentences differ by video
    hyps = batchings(model.eval(), data, num_beams=5, max_new_tokens=12)
    assert len(set(hyps)) >= 5, hyps


def official_run(tmp_path, dev_split='test') -> Path:
    "A copy of the smoke run that uses one in-context example, with translations of its train and test samples."
    src = smoke_run(); run = tmp_path / 'run'
    shutil.copytree(src, run, ignore=shutil.ignore_patterns('.lock', 'eval-*'))
    root = (src.parent / 'data').resolve()
    rows = {s.id: {'en': f'en {s.id}', 'fr': f'fr {s.id}'} for split in ('train', 'test')
            for s in load_dataset('phoenix14t', root / 'synthsign', split)}
    side = tmp_path / 'tr.jsonl'
    side.write_text(''.join(json.dumps(dict(id=i, **tr)) + '\n' for i, tr in rows.items()), encoding='utf-8')
    for f in [run / 'config.json', *run.glob('checkpoints/*/config.json')]:
        c = json.loads(f.read_text())
        c['data'] |= dict(data_root=str(root / 'synthsign'), features=str(root / 'features'), translations=str(side), dev_split=dev_split)
        c['model'] |= dict(num_examples=1, llm=str((src.parent / 'llm').resolve()))
        c['train']['run_dir'] = str(run)
        f.write_text(json.dumps(c))
    return run


@pytest.fixture
def recorded(monkeypatch):
    "Every prompt SpaMo builds, beside the batch's sample ids."
    seen, original = {}, spamo.model.SpaMo.prompts
    def prompts(self, batch):
        out = original(self, batch); seen.update(zip(batch.get('ids') or [], out)); return out
    monkeypatch.setattr(spamo.model.SpaMo, 'prompts', prompts)
    return seen


def test_official_protocol_samples_reproducibly_with_in_batch_examples(tmp_path, recorded):
    run = official_run(tmp_path)
    test = load_dataset('phoenix14t', json.loads((run / 'config.json').read_text())['data']['data_root'], 'test')
    recorded.clear()                                                             # (a smoke run built just now records prompts too)
    std = evaluate_run(run, 'test', out=tmp_path / 'std', progress=False, verbose=False)
    assert recorded and all(' en synthsign-train-' in p for p in recorded.values())            # standard: examples from training
    recorded.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        off = evaluate_run(run, 'test', out=tmp_path / 'off', progress=False, verbose=False, eval_protocol='official')
    assert not [w for w in caught if 'selected' in str(w.message)]               # selected on test here: no warning
    batch = json.loads((run / 'config.json').read_text())['train']['batch_size']
    pos = {s.id: i for i, s in enumerate(test)}
    for s in test:                                                               # official: another sample of its batch of the test split
        owner = recorded[s.id].split(' en ')[1].split('=')[0]
        other = next(t for t in test if t.id == owner)
        assert owner != s.id and other.text != s.text and f'en {owner}={other.text}' in recorded[s.id]
        assert pos[owner] // batch == pos[s.id] // batch or pos[s.id] >= len(test) - len(test) % batch - batch
    assert off['hyps'] != std['hyps']
    again = evaluate_run(run, 'test', out=tmp_path / 'again', progress=False, verbose=False, eval_protocol='official', batch_size=3)
    other = evaluate_run(run, 'test', out=tmp_path / 'other', progress=False, verbose=False, eval_protocol='official', generation_seed=1)
    assert other['hyps'] != off['hyps']
    assert evaluate_run(run, 'test', out=tmp_path / 'twice', progress=False, verbose=False, eval_protocol='official')['hyps'] == off['hyps']
    assert len(again['hyps']) == len(off['hyps'])
    label = json.loads((tmp_path / 'off' / 'metrics.json').read_text())['eval_protocol']
    assert (label['name'], label['do_sample'], label['top_p'], label['top_k'], label['num_beams'], label['seed']) == ('official', True, 0.9, 50, 5, 0)
    assert label['test_as_validation'] and label['selected_on'] == 'test' and 'same batch' in label['examples']
    assert "the authors' evaluation" in label['means']
    std_label = json.loads((tmp_path / 'std' / 'metrics.json').read_text())['eval_protocol']
    assert (std_label['name'], std_label['do_sample'], std_label['seed'], std_label['batch_size']) == ('standard', False, None, 32)


def test_official_on_a_run_selected_on_dev_warns(tmp_path):
    run = official_run(tmp_path, dev_split='dev')
    with pytest.warns(UserWarning, match="selected it on 'dev'"):
        evaluate_run(run, 'test', out=tmp_path / 'off', progress=False, verbose=False, eval_protocol='official')
    assert json.loads((tmp_path / 'off' / 'metrics.json').read_text())['eval_protocol']['test_as_validation'] is False


def test_official_without_translations_of_the_split_says_how(tmp_path):
    run = official_run(tmp_path)
    with pytest.raises(ValueError, match='--split dev'):
        evaluate_run(run, 'dev', out=tmp_path / 'x', progress=False, verbose=False, eval_protocol='official')


def test_cli_translates_with_batch_size_and_protocol(tmp_path):
    run = official_run(tmp_path)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert evaluate_cli([str(run), '--translate', '--batch-size', '3', '--eval-protocol', 'official', '--resamples', '0']) == 0
    assert out.getvalue().startswith('[evaluation official: beam sampling (5 beams, top_p 0.9, top_k 50, seed 0)'), out.getvalue()
    stored = json.loads((run / 'eval-test' / 'metrics.json').read_text())
    assert (stored['eval_protocol']['name'], stored['eval_protocol']['batch_size']) == ('official', 3)
    with contextlib.redirect_stdout(io.StringIO()) as out:                      # rescoring keeps the label
        assert evaluate_cli([str(run), '--json', '--resamples', '0', '--out', str(tmp_path / 'again')]) == 0
    assert json.loads(out.getvalue())['eval_protocol']['name'] == 'official'
    assert json.loads((tmp_path / 'again' / 'metrics.json').read_text())['eval_protocol']['name'] == 'official'
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert evaluate_cli([str(run), '--batch-size', '3']) == 2
    assert 'add --translate' in err.getvalue()
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert evaluate_cli([str(run), '--translate', '--eval-protocol', 'official', '--split', 'dev']) == 2
    assert 'spamo translations' in err.getvalue()
