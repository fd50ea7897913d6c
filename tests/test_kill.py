"""Training survives `kill -9` at any moment: at a random step, between the two renames of a checkpoint save, and
while a checkpoint is being written; the resumed run ends exactly as an uninterrupted one."""
import csv, json, os, random, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file
from spamo.checkpoint import checkpoint_dir, has_checkpoint
from spamo.presets import resolve_config
from spamo.testing import smoke_run

REPO = Path(__file__).resolve().parents[1]
STEPS = 8

# Runs `train` on the config in argv[1]. Test hooks live here, not in the library; each fires at an event, never after a
# delay, so the test behaves the same on a fast or a slow machine:
# PAUSE_AFTER_ROW=s writes the file PAUSED and waits for ever once log.csv holds step s's row (the test kills it there);
# KILL_BETWEEN_RENAMES_AT=s sends SIGKILL to itself after `last` -> `last.old` and before `last.tmp` -> `last` of step s's
# save; PAUSE_IN_SAVE_AT=s writes PAUSED and waits for ever inside step s's checkpoint write (while `last.tmp` exists).
SCRIPT = r'''
import json, os, pathlib, signal, sys, time, torch
import spamo.train, spamo.checkpoint
from spamo.presets import resolve_config
from spamo.checkpoint import save_checkpoint
env, now = lambda k: int(os.environ.get(k, 0)), {}
def pause():
    pathlib.Path(os.environ['PAUSED']).write_text(str(now.get('step')))
    while True: time.sleep(1)
def save(path, *a, **kw):
    now['step'] = a[3]; return save_checkpoint(path, *a, **kw)
rename, write, add = pathlib.Path.rename, spamo.checkpoint.write_atomic, spamo.train.RunLog.add
def kill_rename(self, target):
    if self.name == 'last.tmp' and now.get('step') == env('KILL_BETWEEN_RENAMES_AT'): os.kill(os.getpid(), signal.SIGKILL)
    return rename(self, target)
def paused_write(path, *a, **kw):
    if now.get('step') == env('PAUSE_IN_SAVE_AT') and 'last.tmp' in str(path) and path.name == 'state.pt': pause()
    return write(path, *a, **kw)
def paused_add(self, **row):
    add(self, **row)
    if row.get('step') == env('PAUSE_AFTER_ROW'): now['step'] = row['step']; pause()
spamo.train.save_checkpoint, pathlib.Path.rename, spamo.checkpoint.write_atomic, spamo.train.RunLog.add = save, kill_rename, paused_write, paused_add
spamo.train.train(resolve_config(**json.loads(sys.argv[1])), progress=False)
'''


@pytest.fixture(scope='module')
def smoke() -> dict:
    out = smoke_run().parent
    return dict(data_root=str(out / 'data' / 'synthsign'), features=str(out / 'data' / 'features'), llm=str(out / 'llm'))


def params(smoke, run_dir, **kw) -> dict:
    return smoke | dict(run_dir=str(run_dir), llm_dtype='fp32', precision='fp32', adapter_hidden=32, vt_warmup_steps=2,
                        max_steps=STEPS, batch_size=4, lr=1e-3, lr_warmup_steps=2, num_examples=0, eval_every=4, save_every=1,
                        num_beams=2, max_new_tokens=12) | kw


def rows(run) -> list:
    p = Path(run) / 'log.csv'
    return list(csv.DictReader(p.open())) if p.exists() else []


def ck_step(run) -> int:
    "The step of the checkpoint a resume would start from (0: none)."
    ck = checkpoint_dir(Path(run) / 'checkpoints' / 'last')
    return torch.load(ck / 'state.pt', weights_only=True)['step'] if has_checkpoint(ck) else 0


def launch(tmp_path, p: dict, **env) -> subprocess.Popen:
    script = tmp_path / 'train_run.py'; script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]), OMP_NUM_THREADS='1', **env)
    return subprocess.Popen([sys.executable, str(script), json.dumps(p)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_when(proc, cond, what: str, timeout: float = 600):
    "SIGKILL `proc` as soon as `cond()` holds (the process waits there for it); fails if the process ends first."
    t0 = time.time()
    while not cond():
        assert proc.poll() is None, f'the run ended before {what}: {proc.communicate()[0][-2000:]}'
        assert time.time() - t0 < timeout, f'{what} did not happen'
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL); proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_kill_9_anywhere_then_resume_is_exact(smoke, tmp_path):
    "Three SIGKILLs (a random step, between the renames of a save, during a save); resumed, the run equals an uninterrupted one."
    rng = random.Random(int.from_bytes(os.urandom(4), 'little')); seed = rng.random()
    proc = launch(tmp_path, params(smoke, tmp_path / 'a')); out = proc.communicate()[0]   # same threads as the killed runs
    assert proc.returncode == 0, out[-3000:]
    a = json.loads((tmp_path / 'a' / 'summary.json').read_text())
    run = tmp_path / 'b'; p = params(smoke, run)
    # 1. after a random step is logged, before its checkpoint is saved
    r1, paused = rng.randint(1, 3), tmp_path / 'PAUSED'
    proc = launch(tmp_path, p, PAUSE_AFTER_ROW=str(r1), PAUSED=str(paused))
    kill_when(proc, paused.exists, f'step {r1}')
    s1 = ck_step(run); assert s1 == r1 - 1 and len(rows(run)) == r1
    # 2. between `last` -> `last.old` and `last.tmp` -> `last`: no `last` on disk, the previous checkpoint in `last.old`
    r2 = s1 + rng.randint(1, 2)
    proc = launch(tmp_path, p | dict(resume=True), KILL_BETWEEN_RENAMES_AT=str(r2)); out = proc.communicate()[0]
    assert proc.returncode == -signal.SIGKILL, out[-2000:]
    ck = run / 'checkpoints'
    if r2 > 1:
        assert not (ck / 'last').exists() and (ck / 'last.old' / 'trainable.safetensors').exists() and (ck / 'last.tmp').exists()
    assert ck_step(run) == r2 - 1
    # 3. while a checkpoint is written (`last.tmp` exists), two steps later
    r3 = r2 + 1
    paused.unlink()
    proc = launch(tmp_path, p | dict(resume=True), PAUSE_IN_SAVE_AT=str(r3), PAUSED=str(paused))
    kill_when(proc, paused.exists, f'the save of step {r3}')
    assert (ck / 'last.tmp').exists()
    assert ck_step(run) == r3 - 1                                                     # the previous checkpoint loads
    load_file(checkpoint_dir(ck / 'last') / 'trainable.safetensors')
    # resume to the end
    proc = launch(tmp_path, p | dict(resume=True)); out = proc.communicate()[0]
    assert proc.returncode == 0, out[-3000:]
    b = json.loads((run / 'summary.json').read_text())
    wa, wb = (load_file(tmp_path / r / 'checkpoints' / 'last' / 'trainable.safetensors') for r in 'ab')
    kills = f'kills after step {r1}, in the save of {r2}, in the save of {r3}; seed {seed}'
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), kills
    la, lb = rows(tmp_path / 'a'), rows(run)
    assert [r['step'] for r in lb] == [str(i) for i in range(1, STEPS + 1)], kills
    assert [(r['loss'], r['ce'], r['vt'], r['dev_bleu4']) for r in la] == [(r['loss'], r['ce'], r['vt'], r['dev_bleu4']) for r in lb], kills
    assert b['steps'] == a['steps'] == STEPS and b['best_dev_bleu4'] == a['best_dev_bleu4']
    assert sorted(p.name for p in ck.iterdir()) == ['best', 'last']                   # nothing left over
