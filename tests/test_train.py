"""The training job: exact resume, papermill parameters, the CLI, and the blind baseline."""
import csv, json, os, subprocess, sys
from pathlib import Path
import pytest, torch, yaml
from safetensors.torch import load_file
from spamo.presets import resolve_config
from spamo.checkpoint import load_run
from spamo.model import FeatureData
from spamo.train import schedule_steps, train, train_cli
from spamo.testing import smoke_run
from spamo.data import load_dataset
from spamo.store import FeatureStore

REPO = Path(__file__).resolve().parents[1]
NB = REPO / 'nbs' / '06_train.ipynb'


@pytest.fixture(scope='module')
def smoke() -> dict:
    "Data, features and tiny LLM of the shared smoke run (built once per machine and code version)."
    out = smoke_run().parent
    return dict(data_root=str(out / 'data' / 'synthsign'), features=str(out / 'data' / 'features'), llm=str(out / 'llm'))


def run_cfg(smoke, run_dir, **kw):
    return resolve_config(**smoke | dict(run_dir=str(run_dir), llm_dtype='fp32', precision='fp32', adapter_hidden=32,
                                             vt_warmup_steps=2, max_steps=6, batch_size=4, lr=1e-3, lr_warmup_steps=2, num_examples=0,
                                             eval_every=3, save_every=3, num_beams=2, max_new_tokens=12) | kw)


def losses(run): return [r['loss'] for r in csv.DictReader(open(Path(run) / 'log.csv'))]


def test_resume_is_exact(smoke, tmp_path):
    "A run stopped after 3 steps and resumed ends with exactly the weights and losses of an uninterrupted run."
    a = train(run_cfg(smoke, tmp_path / 'a'), progress=False)
    b = train(run_cfg(smoke, tmp_path / 'b'), stop_after=3, progress=False)
    assert b['steps'] == 3 and len(losses(tmp_path / 'b')) == 3
    with pytest.raises(FileExistsError, match='resume=True'): train(run_cfg(smoke, tmp_path / 'b'), progress=False)
    b = train(run_cfg(smoke, tmp_path / 'b', resume=True), progress=False)
    assert b['steps'] == a['steps'] == 6
    wa, wb = (load_file(tmp_path / r / 'checkpoints' / 'last' / 'trainable.safetensors') for r in 'ab')
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert losses(tmp_path / 'a') == losses(tmp_path / 'b')      # the log reads as one run, same losses
    assert b['best_dev_bleu4'] == a['best_dev_bleu4']
    w0 = load_file(tmp_path / 'a' / 'checkpoints' / 'best' / 'trainable.safetensors')
    assert any('lora_' in k for k in w0) and not any('shared' in k for k in w0)  # only trained weights are saved


def test_blind_model_ignores_the_video(smoke, tmp_path):
    "The blind baseline's translations do not depend on the features; SpaMo's visual tokens do."
    run = smoke_run()
    model, cfg = load_run(run)
    data = FeatureData(load_dataset('phoenix14t', cfg.data.data_root, 'test'), FeatureStore(cfg.data.features))
    b = data.batch([0, 1])
    z, _ = model.visual_tokens(b)
    b2 = b | dict(spatial=torch.randn_like(b['spatial']), motion=torch.randn_like(b['motion']))
    assert not torch.allclose(model.visual_tokens(b2)[0], z)
    model.blind = True
    assert torch.equal(model.visual_tokens(b2)[0], model.visual_tokens(b)[0])
    assert model.generate(b2, num_beams=2, max_new_tokens=8) == model.generate(b, num_beams=2, max_new_tokens=8)


def test_cli_yaml_and_overrides(smoke, tmp_path):
    "`spamo train -f config.yaml -p name value` trains with the file's parameters and the overrides."
    f = tmp_path / 'c.yaml'
    f.write_text(yaml.safe_dump(smoke | dict(run_dir=str(tmp_path / 'r'), llm_dtype='fp32', precision='fp32', adapter_hidden=32,
                                             vt_warmup_steps=1, max_steps=2, batch_size=4, eval_every=2, save_every=2,
                                             num_beams=1, max_new_tokens=8, lora_r=8, num_examples=0)))
    assert train_cli(['-f', str(f), '-p', 'lora_r', '4', '-p', 'max_steps', '3']) == 0
    cfg = json.loads((tmp_path / 'r' / 'config.json').read_text())
    assert cfg['model']['lora_r'] == 4 and cfg['train']['max_steps'] == 3
    assert json.loads((tmp_path / 'r' / 'summary.json').read_text())['steps'] == 3
    assert train_cli(['-p', 'lora_rank', '4']) == 2  # an unknown parameter is refused by name


def test_papermill_overrides_the_defaults(smoke, tmp_path):
    "`papermill nbs/06_train.ipynb out.ipynb -p ...` runs the job with the given values, not the notebook's defaults."
    args = [sys.executable, '-m', 'papermill', str(NB), str(tmp_path / 'out.ipynb'), '-p', 'run_dir', str(tmp_path / 'run'),
            '-p', 'max_steps', '3', '-p', 'lora_r', '4', '-p', 'eval_every', '3', '--cwd', str(NB.parent)]
    for k, v in smoke.items(): args += ['-p', k, v]
    subprocess.run(args, check=True, capture_output=True)
    cfg = json.loads((tmp_path / 'run' / 'config.json').read_text())
    assert (cfg['model']['lora_r'], cfg['train']['max_steps'], cfg['data']['features']) == (4, 3, smoke['features'])
    assert len(losses(tmp_path / 'run')) == 3 and (tmp_path / 'run' / 'curves.png').exists()


def test_help_notebook_lists_every_parameter():
    "`papermill --help-notebook` documents every parameter of the job with its comment."
    out = subprocess.run([sys.executable, '-m', 'papermill', '--help-notebook', str(NB)], check=True, capture_output=True, text=True).stdout
    src = next(''.join(c['source']) for c in json.loads(NB.read_text())['cells'] if 'parameters' in c['metadata'].get('tags', []))
    lines = [l for l in src.splitlines() if l and not l.startswith('#')]
    assert len(lines) > 30
    flat = ' '.join(out.split())  # help text wraps long comments
    for line in lines:
        name, comment = line.split(':')[0], ' '.join(line.split('#', 1)[1].split())
        assert f'{name}:' in out and comment in flat, name


def test_nan_features_stop_the_run_naming_the_sample(smoke, tmp_path):
    "A record replaced by NaNs stops training at the first step that reads it, naming the sample, before any checkpoint."
    import shutil
    from spamo.store import write_record
    from spamo.checkpoint import has_checkpoint
    from spamo.train import batch_indices
    feats = tmp_path / 'features'; shutil.copytree(smoke['features'], feats)
    store, samples = FeatureStore(feats), load_dataset('phoenix14t', smoke['data_root'], 'train')
    bad = samples[batch_indices(len(samples), 4, 0, 0)[1]].id                  # in the first batch
    z = store[bad]
    write_record(store.file(bad), bad, torch.full_like(z['spatial'], float('nan')), z['motion'], store.settings)
    cfg = run_cfg(smoke | dict(features=str(feats)), tmp_path / 'r', save_every=1)
    with pytest.raises(FloatingPointError, match=rf"step 1: non-finite features in sample\(s\) \['{bad}'\]"): train(cfg, progress=False)
    assert not has_checkpoint(tmp_path / 'r' / 'checkpoints' / 'last') and not (tmp_path / 'r' / 'checkpoints' / 'best').exists()


def test_long_targets_warn_once_with_the_count(smoke, tmp_path):
    "Targets longer than max_target_len are truncated with one warning that counts them."
    import warnings
    from spamo.model import SpaMo
    cfg = run_cfg(smoke, tmp_path / 'r', max_steps=1, eval_every=1, save_every=1)
    n = len(load_dataset('phoenix14t', smoke['data_root'], 'train'))
    init = SpaMo.__init__
    def short(self, *a, **kw): init(self, *a, **kw | dict(max_target_len=3))
    SpaMo.__init__ = short
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always'); train(cfg, progress=False)
    finally: SpaMo.__init__ = init
    msgs = [str(x.message) for x in w if 'max_target_len' in str(x.message)]
    assert msgs == [f'{n} of {n} training target sentences have more than max_target_len=3 tokens and are truncated to it']


def _readme_line(start: str) -> str:
    "The README's command line that starts with `start`, as typed there (README.md is generated from nbs/index.ipynb)."
    text = ''.join(''.join(c['source']) for c in json.loads((REPO / 'nbs' / 'index.ipynb').read_text())['cells'])
    return next(l.split('#')[0].strip() for l in text.splitlines() if l.strip().startswith(start))


def test_readme_training_commands_train_the_papers_schedule(tmp_path):
    "The README's papermill and `spamo train` lines, typed in a copy of the repository elsewhere: the job they prepare is the paper's run."
    import shutil, subprocess
    from spamo.config import config_fields
    from spamo.presets import resolve_config
    (tmp_path / 'nbs').mkdir(); shutil.copy(NB, tmp_path / 'nbs'); shutil.copytree(REPO / 'configs', tmp_path / 'configs')
    line = _readme_line('mkdir -p runs/phoenix14t && papermill nbs/06_train.ipynb')
    subprocess.run(line + ' --prepare-only', shell=True, cwd=tmp_path, check=True, capture_output=True)
    cells = json.loads((tmp_path / 'runs' / 'phoenix14t' / 'train.ipynb').read_text())['cells']
    g = {}
    for c in cells:
        if {'parameters', 'injected-parameters'} & set(c['metadata'].get('tags', [])): exec(''.join(c['source']), g)
    cfg = resolve_config(g['preset'], **{k: g[k] for k in config_fields()})    # as the job's next cell resolves it
    t = cfg.train
    assert (g['preset'], t.epochs, t.batch_size, t.vt_warmup_samples, t.lr_warmup_samples, t.eval_every_epochs, cfg.model.num_examples,
            cfg.model.llm, cfg.data.data_root) == ('phoenix14t', 40, 8, 32000, 80000, 1, 1, 'google/flan-t5-xl', 'data/PHOENIX-2014-T')
    steps = schedule_steps(t, 7096)[0]   # PHOENIX14T's 7,096 training videos on one GPU: the paper's steps (section 4.1, appendix A)
    assert (steps.max_steps, steps.vt_warmup_steps, steps.lr_warmup_steps, steps.eval_every) == (35480, 4000, 10000, 887)
    out = subprocess.run([sys.executable, '-m', 'spamo.cli', 'train', '-f', 'configs/phoenix14t.yaml', '--dry-run'], cwd=tmp_path,
                         capture_output=True, text=True, check=True, env=os.environ | {'PYTHONPATH': str(REPO)}).stdout
    shown = json.loads(out)
    assert shown['preset'] == 'phoenix14t' and not {'max_steps', 'batch_size', 'vt_warmup_steps'} & set(shown), shown  # the paper's
