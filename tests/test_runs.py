"""Run directories are self-contained, and damaged run files name themselves and the fix."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest, torch
from spamo.config import RunConfig
from spamo.checkpoint import load_run
from spamo.translate import Translator
from spamo.data import load_dataset
from spamo.testing import smoke_run

torch.set_num_threads(1)


@pytest.fixture(scope='module')
def moved(tmp_path_factory):
    "A smoke run built in one folder, then moved (run, data, LLM and features together) to another."
    a, b = tmp_path_factory.mktemp('built'), tmp_path_factory.mktemp('moved')
    run = smoke_run(a / 'smoke')
    cfg = json.loads((run / 'config.json').read_text())
    assert not os.path.isabs(cfg['model']['llm']) and not os.path.isabs(cfg['data']['features'])   # stored relative to the run
    shutil.move(str(a / 'smoke'), str(b / 'smoke'))
    return b / 'smoke' / 'run'


def test_a_moved_run_translates_from_any_folder(moved, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, cfg = load_run(moved)
    assert Path(cfg.model.llm).is_dir() and Path(cfg.data.features).is_dir() and cfg.train.run_dir == str(moved)
    video = load_dataset(cfg.data.dataset, cfg.data.data_root, 'test')[0].video
    out = Translator.from_run(moved, progress=False)([video])
    assert out[0].error is None and out[0].text is not None
    ck = Translator.from_run(moved / 'checkpoints' / 'best', progress=False)([video])   # a checkpoint folder alone
    assert ck[0].text == out[0].text


def test_the_translate_command_from_another_folder(moved, tmp_path):
    video = load_dataset('phoenix14t', str(moved.parent / 'data' / 'synthsign'), 'test')[0].video
    p = subprocess.run([sys.executable, '-m', 'spamo.cli', 'translate', str(moved), video, '--no-progress', '--json'], cwd=tmp_path,
                       capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout[p.stdout.index('['):])[0]['text']


def test_damaged_run_files_name_themselves(moved, tmp_path):
    shutil.copytree(moved.parent, tmp_path / 'smoke'); run = tmp_path / 'smoke' / 'run'
    (run / 'checkpoints' / 'best' / 'trainable.safetensors').write_bytes(os.urandom(300))
    with pytest.raises(ValueError, match='best/trainable.safetensors: damaged weights file.*checkpoint='): load_run(run)
    (run / 'checkpoints' / 'last' / 'state.pt').write_bytes(os.urandom(300))         # inference never reads the state
    assert load_run(run, 'last')[0] is not None
    (run / 'config.json').write_text('{"data": ')
    (run / 'checkpoints' / 'last' / 'config.json').write_text('not json')
    with pytest.raises(ValueError, match='last/config.json: not a readable spamo run config'): load_run(run, 'last')
    with pytest.raises(ValueError, match='run/config.json: not a readable'): RunConfig.load(run / 'config.json')


def test_a_damaged_training_state_names_itself_on_resume(moved, tmp_path):
    from spamo.checkpoint import load_checkpoint
    shutil.copytree(moved.parent, tmp_path / 'smoke'); run = tmp_path / 'smoke' / 'run'
    (run / 'checkpoints' / 'last' / 'state.pt').write_bytes(os.urandom(300))
    model, _ = load_run(run, 'last')
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    with pytest.raises(ValueError, match='last/state.pt: damaged training state'): load_checkpoint(run / 'checkpoints' / 'last', model, opt)
