"""Model cards and hub-style loading (issue 25 items 2 and 3): the card's front matter holds the run's own values in the
form the Hugging Face hub reads, and a run laid out as the hub holds it loads from a folder and, offline, by hub id
through huggingface_hub's real `snapshot_download` (a cache filled as a download leaves it; nothing is mocked)."""
import contextlib, io, json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
import yaml

from spamo.card import DATASET_INFO, card_cli, hub_cache, hub_folder, write_card
from spamo.config import RunConfig
from spamo.data import load_dataset
from spamo.evaluate import evaluate_run
from spamo.testing import smoke_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def evaluated(tmp_path_factory):
    "A copy of the smoke run (data, tiny LLM, run) evaluated on its test split: (run, metrics)."
    root = tmp_path_factory.mktemp('card') / 'smoke'
    shutil.copytree(smoke_run().parent, root, ignore=shutil.ignore_patterns('eval-*', '.lock', 'README.md'))
    with contextlib.redirect_stdout(io.StringIO()): m = evaluate_run(root / 'run', progress=False, resamples=0)
    return root / 'run', m


def front_matter(path: Path) -> dict:
    text = path.read_text(encoding='utf-8')
    assert text.startswith('---\n'), text[:80]
    return yaml.safe_load(text.split('---\n')[1])


def test_front_matter_holds_the_runs_values(evaluated):
    run, m = evaluated
    meta = front_matter(write_card(run))
    cfg = RunConfig.load(run / 'config.json', run_dir=run)
    langs = sorted({s.language for s in load_dataset(cfg.data.dataset, cfg.data.data_root, cfg.data.train_split)})
    assert meta['language'] == langs == ['de']
    assert (meta['datasets'], meta['library_name']) == (['SynthSign'], 'spamo') and 'sign-language-translation' in meta['tags']
    assert 'base_model' not in meta and 'license' not in meta          # a tiny local LLM, random encoders, generated data
    (index,) = meta['model-index']
    (result,) = index['results']
    assert (result['task']['type'], result['dataset']['split']) == ('translation', 'test')
    stored = json.loads((run / 'eval-test' / 'metrics.json').read_text())
    got = {x['type']: x for x in result['metrics']}
    assert got['bleu']['value'] == round(stored['bleu4'], 2) == round(m['bleu4'], 2)
    assert got['rouge']['value'] == round(stored['rouge_l'], 2) and got['chrf']['value'] == round(stored['chrf'], 2)
    assert got['bleu']['args'] == stored['signature'] and got['chrf']['args'] == stored['chrf_signature']
    assert {x['config'] for x in result['metrics']} == {stored['protocol']} == {'slt'}
    assert got['bleu']['name'] == f"BLEU-4 (slt scoring, {stored['eval_protocol']['name']} decoding)"


def test_every_protocol_and_the_hub_models_of_a_full_scale_run(evaluated, tmp_path):
    "A run on PHOENIX14T with the paper's models (its config and features.json say so; nothing loads): base models, licence, both protocols."
    run, _ = evaluated
    other = tmp_path / 'run'; shutil.copytree(run, other, ignore=shutil.ignore_patterns('checkpoints'))
    d = json.loads((other / 'config.json').read_text())
    d['model']['llm'], d['data'] = 'google/flan-t5-xl', d['data'] | dict(dataset='phoenix14t', data_root='', features='')
    (other / 'config.json').write_text(json.dumps(d))
    s = json.loads((other / 'features.json').read_text())
    s.update(spatial='openai/clip-vit-large-patch14', spatial_weights='openai/clip-vit-large-patch14',
             motion='MCG-NJU/videomae-large', motion_weights='MCG-NJU/videomae-large', recipe='official')
    (other / 'features.json').write_text(json.dumps(s))
    off = json.loads((other / 'eval-test' / 'metrics.json').read_text()) | dict(protocol='spamo-official', bleu4=12.345, signature='nrefs:1|case:lc|x')
    (other / 'eval-test' / 'spamo-official').mkdir(); (other / 'eval-test' / 'spamo-official' / 'metrics.json').write_text(json.dumps(off))
    meta = front_matter(write_card(other))
    assert meta['base_model'] == ['google/flan-t5-xl', 'openai/clip-vit-large-patch14', 'MCG-NJU/videomae-large']
    assert (meta['license'], meta['datasets'], meta['language']) == (DATASET_INFO['phoenix14t']['license'], ['PHOENIX-2014-T'], ['de'])
    results = meta['model-index'][0]['results']
    assert [r['metrics'][0]['config'] for r in results] == ['slt', 'spamo-official']
    assert (results[1]['metrics'][0]['value'], results[1]['metrics'][0]['args']) == (12.35, 'nrefs:1|case:lc|x')
    body = (other / 'README.md').read_text()
    assert "preset `phoenix14t`" in body and '| `adapter_hidden` | `64` | `1024` |' in body   # the recipe against the paper's


def test_huggingface_hub_reads_the_card(evaluated):
    hub = pytest.importorskip('huggingface_hub')
    run, m = evaluated
    card = write_card(run)
    assert hub.metadata_load(card) == front_matter(card)
    mc = hub.ModelCard.load(card)
    assert mc.data.library_name == 'spamo' and mc.data.language == ['de']
    ev = mc.data.eval_results
    assert [(e.task_type, e.dataset_split, e.metric_type, e.metric_config) for e in ev] == [
        ('translation', 'test', 'bleu', 'slt'), ('translation', 'test', 'rouge', 'slt'), ('translation', 'test', 'chrf', 'slt')]
    assert ev[0].metric_value == round(m['bleu4'], 2)
    assert hub.ModelCard(mc.content).data.to_dict()['model-index'] == front_matter(card)['model-index']   # round trip


def test_the_cards_code_runs_and_translates_as_evaluation_did(evaluated):
    run, m = evaluated
    text = write_card(run).read_text()
    cfg = RunConfig.load(run / 'config.json', run_dir=run)
    sample = load_dataset(cfg.data.dataset, cfg.data.data_root, 'test')[0]
    code = text.split('```python\n')[1].split('```')[0]
    ns = {}; exec(code.replace('my_clip.mp4', sample.video).replace('print(', 'said = ('), ns)
    assert ns['said'] == m['hyps'][m['ids'].index(sample.id)]
    assert ns['model'].config.model.adapter_hidden == cfg.model.adapter_hidden and not ns['model'].training


def test_a_readme_spamo_did_not_write_is_kept(evaluated, tmp_path):
    run, _ = evaluated
    other = tmp_path / 'run'; shutil.copytree(run, other, ignore=shutil.ignore_patterns('checkpoints'))
    (other / 'README.md').write_text('# my notes\n')
    with pytest.warns(UserWarning, match='not written by spamo'): assert write_card(other) is None
    assert (other / 'README.md').read_text() == '# my notes\n'
    with contextlib.redirect_stderr(io.StringIO()) as err: assert card_cli([str(other)]) == 2
    assert '--force' in err.getvalue()
    with contextlib.redirect_stdout(io.StringIO()): assert card_cli([str(other), '--force']) == 0
    assert front_matter(other / 'README.md')['library_name'] == 'spamo'


def hub_layout(run: Path, out: Path) -> Path:
    "The folder a user uploads, written by `spamo card RUN --out DIR` (the CLI, as typed)."
    with contextlib.redirect_stdout(io.StringIO()): assert card_cli([str(run), '--out', str(out), '--repo-id', 'spamo-tests/smoke']) == 0
    return out


def test_the_upload_folder_holds_what_the_hub_needs(evaluated, tmp_path):
    run, _ = evaluated
    up = hub_layout(run, tmp_path / 'up')
    assert sorted(p.name for p in up.iterdir()) == ['README.md', 'config.json', 'features.json', 'llm', 'prompt.json', 'trainable.safetensors']
    d = json.loads((up / 'config.json').read_text())
    assert d['model']['llm'] == 'llm' and all(d['data'][k] == '' for k in ('data_root', 'features', 'translations'))
    assert (up / 'trainable.safetensors').read_bytes() == (run / 'checkpoints' / 'best' / 'trainable.safetensors').read_bytes()
    assert json.loads((up / 'prompt.json').read_text()) == dict(language='de', examples=[])
    assert 'Translator.from_run("spamo-tests/smoke")' in (up / 'README.md').read_text()
    assert not any(str(tmp_path) in p.read_text() for p in up.glob('*.json'))   # no path of this machine travels


def test_spamo_from_pretrained_loads_a_hub_layout_folder(evaluated, tmp_path):
    from spamo.translate import SpaMo, Translator
    run, m = evaluated
    up = hub_layout(run, tmp_path / 'up')
    model = SpaMo.from_pretrained(up)
    assert (model.run_dir, model.training) == (up, False)
    assert model.config.model.llm == str((up / 'llm').resolve())      # its own copy of the LLM, not the run's
    cfg = RunConfig.load(run / 'config.json', run_dir=run)
    sample = load_dataset(cfg.data.dataset, cfg.data.data_root, 'test')[1]
    assert Translator.from_run(up, device='cpu', progress=False)([sample.video])[0].text == m['hyps'][m['ids'].index(sample.id)]


def spamo_cli(*argv, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'spamo.cli', *map(str, argv)], capture_output=True, text=True, timeout=300,
                          env=os.environ | dict(OMP_NUM_THREADS='1') | env, cwd=REPO)


def test_a_hub_id_loads_offline_from_the_cache_through_snapshot_download(evaluated, tmp_path):
    "HF_HUB_OFFLINE=1 and HF_HUB_CACHE set as a user would: `spamo translate owner/name` finds the cached snapshot; an id not cached fails saying what to do."
    run, m = evaluated
    up = hub_layout(run, tmp_path / 'up')
    cache = tmp_path / 'hf-cache'
    snap = hub_cache(up, 'spamo-tests/smoke', cache)
    assert snap.parent.parent == cache / 'models--spamo-tests--smoke' and (cache / 'models--spamo-tests--smoke' / 'refs' / 'main').read_text() == snap.name
    cfg = RunConfig.load(run / 'config.json', run_dir=run)
    sample = load_dataset(cfg.data.dataset, cfg.data.data_root, 'test')[2]
    env = dict(HF_HUB_OFFLINE='1', HF_HUB_CACHE=str(cache))
    r = spamo_cli('translate', 'spamo-tests/smoke', sample.video, '--no-progress', '--device', 'cpu', env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines()[1].strip() == m['hyps'][m['ids'].index(sample.id)]
    r = spamo_cli('translate', 'spamo-tests/not-downloaded', sample.video, '--no-progress', env=env)
    assert r.returncode == 2
    assert "spamo-tests/not-downloaded" in r.stderr and 'hf download spamo-tests/not-downloaded --local-dir DIR' in r.stderr, r.stderr
    assert 'pass the folder' in r.stderr and 'HF_HUB_OFFLINE' in r.stderr


def test_card_cli_refuses_bad_input(evaluated, tmp_path):
    run, _ = evaluated
    for argv, says in (([str(tmp_path / 'no-run')], 'is not a spamo run'), ([str(run), '--repo-id', 'no id'], 'is not a hub id'),
                       ([str(run), '--out', str(tmp_path / 'x'), '--llm', './llm'], 'is not a hub id')):
        with contextlib.redirect_stderr(io.StringIO()) as err: assert card_cli(argv) == 2, argv
        assert says in err.getvalue(), (argv, err.getvalue())
