"""Stopping and sharing: Ctrl-C or SIGTERM stops extraction and training within seconds, keeps what a kill -9 would keep and
says how to go on; a second training of a run is refused by its writer lock; a reader of a run that is training sees
one whole checkpoint (config and weights of the same save)."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from spamo.checkpoint import load_run, save_checkpoint
from spamo.store import Busy, FeatureStore
from spamo.testing import smoke_run, toy_manifest
from spamo.train import train
from spamo.presets import resolve_config

ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')


@pytest.fixture(scope='module')
def smoke() -> dict:
    out = smoke_run().parent
    return dict(data_root=str(out / 'data' / 'synthsign'), features=str(out / 'data' / 'features'), llm=str(out / 'llm'))


def train_args(smoke, run, **kw) -> list:
    p = smoke | dict(run_dir=str(run), llm_dtype='fp32', precision='fp32', adapter_hidden=32, vt_warmup_steps=2, max_steps=100000,
                     batch_size=4, lr=1e-3, lr_warmup_steps=2, num_examples=0, eval_every=100000, save_every=2, num_beams=1) | kw
    return [x for k, v in p.items() for x in ('-p', k, str(v).lower() if isinstance(v, bool) else str(v))]


def wait_for(cond, proc, what: str, limit: float = 120):
    t = time.time()
    while not cond():
        assert proc.poll() is None, f'the job ended before {what}: {proc.communicate()[1][-2000:]}'
        assert time.time() - t < limit, f'no {what} after {limit} s'
        time.sleep(0.1)


def stop(proc, sig) -> tuple[float, str]:
    "Send `sig` and wait for the job to end: the seconds it took and its stderr."
    t = time.time(); proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return time.time() - t, err


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_a_signal_stops_extraction_which_resumes(tmp_path, sig):
    "Stopped after its first record, `spamo extract` exits 130 within seconds, names how to go on; the re-run does the rest."
    man, out = toy_manifest(tmp_path / 'toy'), tmp_path / 'store'
    cmd = [sys.executable, '-m', 'spamo.cli', 'extract', '--dataset', 'manifest', '--root', str(man), '--out', str(out),
           '--spatial', 'tiny', '--motion', 'tiny', '--recipe', 'spamo', '--no-progress']
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    wait_for(lambda: any((out / 'records').glob('*.safetensors')) if (out / 'records').exists() else False, proc, 'first record')
    took, err = stop(proc, sig)
    assert proc.returncode == 130 and took < 20, (proc.returncode, took, err[-1500:])
    assert f'stopped ({signal.Signals(sig).name})' in err and 'finished videos are skipped' in err, err[-1500:]
    kept = sorted(p.name for p in (out / 'records').glob('*.safetensors'))
    assert kept and not list((out / 'records').glob('.*.tmp')), kept            # whole records only
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-1500:]
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep['skipped'] >= len(kept) and rep['failed'] == 0 and len(FeatureStore(out)) == 6, rep


def test_a_signal_stops_training_which_resumes(smoke, tmp_path):
    "`spamo train` stopped by SIGTERM after a checkpoint exits 130 within seconds, says `-p resume true`; that resume continues."
    run = tmp_path / 'run'
    proc = subprocess.Popen([sys.executable, '-m', 'spamo.cli', 'train', *train_args(smoke, run)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    wait_for(lambda: (run / 'checkpoints' / 'last' / 'trainable.safetensors').exists(), proc, 'first checkpoint')
    took, err = stop(proc, signal.SIGTERM)
    assert proc.returncode == 130 and took < 30, (proc.returncode, took, err[-1500:])
    assert '-p resume true' in err, err[-1500:]
    step = torch.load(run / 'checkpoints' / 'last' / 'state.pt', weights_only=True)['step']
    assert step >= 2
    r = subprocess.run([sys.executable, '-m', 'spamo.cli', 'train', *train_args(smoke, run, resume=True, max_steps=step + 2)],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-1500:]
    assert json.loads(r.stdout[r.stdout.index('{'):])['steps'] == step + 2


def test_a_second_training_of_a_run_is_refused(smoke, tmp_path):
    "While one training writes a run, another into the same run_dir is refused, naming the run and the writer's process."
    run = tmp_path / 'run'
    proc = subprocess.Popen([sys.executable, '-m', 'spamo.cli', 'train', *train_args(smoke, run)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        wait_for(lambda: (run / 'log.csv').exists(), proc, 'the first training step')
        with pytest.raises(Busy, match=f'run {run} is being written by process {proc.pid}'):   # before it writes anything
            train(resolve_config(**smoke | dict(run_dir=str(run), llm_dtype='fp32', precision='fp32', adapter_hidden=32, max_steps=4,
                                                batch_size=4, num_examples=0, eval_every=2, save_every=2, resume=True)), progress=False)
        r = subprocess.run([sys.executable, '-m', 'spamo.cli', 'train', *train_args(smoke, run, resume=True)], capture_output=True,
                           text=True, env=ENV, timeout=120)
        assert r.returncode == 2 and f'is being written by process {proc.pid}' in r.stderr, r.stderr[-1500:]
        assert proc.poll() is None                                            # the first training goes on
    finally:
        proc.kill(); proc.wait()


SAVER = r'''
import sys, pathlib, torch
from spamo.checkpoint import load_run, save_checkpoint
run = pathlib.Path(sys.argv[1]); model, cfg = load_run(run)
opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
for step in range(1, 100000):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad: p.fill_(step)
    cfg.train.seed = step                       # the config of each save says which save it is
    save_checkpoint(run / 'checkpoints' / 'best', model, opt, sched, step, 0.0, cfg)
    if step == 1: pathlib.Path(sys.argv[2]).write_text('saving')
'''


def test_a_reader_sees_one_whole_checkpoint_while_training_saves(tmp_path):
    "`load_run` during a stream of saves of the same checkpoint: config and weights always come from the same save."
    import shutil
    src = smoke_run(); shutil.copytree(src.parent, tmp_path / 'smoke'); run = tmp_path / 'smoke' / src.name   # its config's paths are relative
    flag = tmp_path / 'saving'
    proc = subprocess.Popen([sys.executable, '-c', SAVER, str(run), str(flag)], stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        wait_for(flag.exists, proc, 'the first save')
        seen, t = set(), time.time()
        while time.time() - t < 8 and len(seen) < 6:
            model, cfg = load_run(run)
            trained = {float(p.flatten()[0]) for p in model.parameters() if p.requires_grad}
            assert trained == {float(cfg.train.seed)}, (trained, cfg.train.seed)     # one save, not a mix of two
            seen.add(cfg.train.seed)
        assert len(seen) >= 2, seen                                              # the reads did overlap several saves
        from spamo.checkpoint import _read_whole   # the reads alone, thousands of them (a naive reader mixes ~4% of them)
        n, t = 0, time.time()
        while time.time() - t < 4:
            cfg, w = _read_whole(run, 'best'); n += 1
            assert {float(v.flatten()[0]) for k, v in w.items() if 'lora_' in k or 'connector' in k} == {float(cfg.train.seed)}
        assert n > 200, n
    finally:
        proc.kill(); proc.wait()


def test_a_signal_stops_reproduce_and_its_job_which_resumes(tmp_path):
    "SIGTERM while a row's job runs: `spamo reproduce` exits 130 within seconds, leaves no job or kernel behind, and resumes."
    import psutil, yaml
    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / 'configs' / 'tables' / 'table3.yaml').read_text())
    spec['rows'], spec['reference'] = [next(r for r in spec['rows'] if r['name'] == 'ME')], 'ME'   # one row, its own reference
    (tmp_path / 'mini3.yaml').write_text(yaml.safe_dump(spec))
    cmd = [sys.executable, '-m', 'spamo.cli', 'reproduce', str(tmp_path / 'mini3.yaml'), '--smoke', '--out', 'results', '--no-blind']
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path)
    kids = lambda: psutil.Process(proc.pid).children(recursive=True)
    wait_for(lambda: len(kids()) >= 2, proc, 'a job with its kernel')           # papermill and the kernel it started
    jobs = kids()
    took, err = stop(proc, signal.SIGTERM)
    assert proc.returncode == 130 and took < 30, (proc.returncode, took, err[-1500:])
    assert 'finished rows are skipped' in err, err[-1500:]
    gone, alive = psutil.wait_procs(jobs, timeout=15)
    assert not alive, [p.cmdline()[:4] for p in alive]                         # nothing left running the job
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
