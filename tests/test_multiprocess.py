"""Several processes on the existing engine (Accelerate; `torchrun --nproc_per_node 2` gives two gloo processes on CPU):
extraction writes the store one process would, and training gives one consistent run that loads and evaluates."""
import csv, hashlib, json, os, shutil, subprocess, sys
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file
from spamo.store import FeatureStore
from spamo.checkpoint import load_run
from spamo.evaluate import evaluate_run
from spamo.testing import smoke_run, toy_manifest

REPO = Path(__file__).resolve().parents[1]
needs_torchrun = pytest.mark.skipif(shutil.which('torchrun') is None, reason='torchrun not found')

CLI = 'import sys; from spamo.cli import main; sys.exit(main(sys.argv[1:]))'

# Trains on the config in argv[1]; every rank then writes the hashes of the weights it ended with to argv[2]/rank<r>.json:
# its parameters, and everything a checkpoint holds (parameters and the adapter's norm statistics, which each rank updates itself).
TRAIN = r'''
import hashlib, json, sys
import torch.distributed as dist
import spamo.train
from spamo.presets import resolve_config
models, build = [], spamo.train.build_model
spamo.train.build_model = lambda *a, **kw: models.append(build(*a, **kw)) or models[-1]
summary = spamo.train.train(resolve_config(**json.loads(sys.argv[1])), progress=False)
sd, trained = models[0].trainable_state_dict(), {n for n, p in models[0].named_parameters() if p.requires_grad}
h = lambda keys: hashlib.sha1(b''.join(sd[k].contiguous().numpy().tobytes() for k in sorted(keys))).hexdigest()
rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
open(f'{sys.argv[2]}/rank{rank}.json', 'w').write(json.dumps(dict(params=h(trained), all=h(sd), world=world, summary=summary)))
'''


def env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]), OMP_NUM_THREADS='1')


def run(args, timeout=400):
    p = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-3000:])
    return p


def torchrun(script: Path, *args):
    return run(['torchrun', '--standalone', '--nproc_per_node', '2', str(script), *map(str, args)])


# A one-process gloo group, as `torchrun` sets up; the handler registered before spamo.features runs after spamo's own
# (atexit is last in, first out) and says whether the group was still open at exit.
AT_EXIT = r'''
import atexit, sys, torch.distributed as dist
atexit.register(lambda: print('open at exit:', dist.is_initialized()))
import spamo.features
dist.init_process_group('gloo', init_method=f'file://{sys.argv[1]}', rank=0, world_size=1)
dist.barrier()
'''


def test_a_job_closes_its_process_group_at_exit(tmp_path):
    "A script that imports spamo.features leaves no process group to interpreter teardown (where gloo can abort with SIGABRT)."
    script = tmp_path / 'exit.py'; script.write_text(AT_EXIT)
    p = run([sys.executable, str(script), str(tmp_path / 'rendezvous')])
    assert p.stdout.strip().splitlines()[-1] == 'open at exit: False', p.stdout


@needs_torchrun
def test_two_process_extraction_equals_one(tmp_path):
    "torchrun --nproc_per_node 2 `spamo extract`: the same ids, the same record tensors and a complete index as one process."
    man = toy_manifest(tmp_path / 'toy', lengths=(3, 12, 17, 20, 9))       # odd count: the shares differ in size
    cli = tmp_path / 'cli.py'; cli.write_text(CLI)
    args = ['extract', '--dataset', 'manifest', '--root', man, '--spatial', 'tiny', '--motion', 'tiny', '--recipe', 'spamo', '--no-progress']
    torchrun(cli, *args, '--out', tmp_path / 'two')
    run([sys.executable, str(cli), *map(str, args), '--out', str(tmp_path / 'one')])
    a, b = FeatureStore(tmp_path / 'two'), FeatureStore(tmp_path / 'one')
    assert sorted(a.ids) == sorted(b.ids) == [f'toy{i:03d}' for i in range(5)]
    ia, ib = (json.loads((tmp_path / d / 'index.json').read_text()) for d in ('two', 'one'))
    assert ia['records'] == ib['records'] and ia['settings'] == ib['settings']
    for i in a.ids:
        for k in ('spatial', 'motion'): assert torch.equal(a[i][k], b[i][k]), (i, k)
    assert json.loads((tmp_path / 'two' / 'failures.json').read_text()) == []


@needs_torchrun
def test_two_process_training_is_one_run(tmp_path):
    "torchrun --nproc_per_node 2 training: both ranks end with the same weights, the main one's checkpoint and log; it loads and evaluates."
    out = smoke_run().parent
    params = dict(data_root=str(out / 'data' / 'synthsign'), features=str(out / 'data' / 'features'), llm=str(out / 'llm'),
                  run_dir=str(tmp_path / 'run'), llm_dtype='fp32', precision='fp32', adapter_hidden=32, vt_warmup_steps=2, max_steps=5,
                  batch_size=2, lr=1e-3, lr_warmup_steps=2, num_examples=0, eval_every=5, save_every=2, num_beams=2, max_new_tokens=12)
    script = tmp_path / 'train2.py'; script.write_text(TRAIN)
    torchrun(script, json.dumps(params), tmp_path)
    r0, r1 = (json.loads((tmp_path / f'rank{r}.json').read_text()) for r in (0, 1))
    assert r0['world'] == r1['world'] == 2 and r0['summary'] == r1['summary'] and r0['summary']['steps'] == 5
    assert r0['params'] == r1['params']                                          # DDP kept the two replicas' weights identical
    run_dir = tmp_path / 'run'
    sd = load_file(run_dir / 'checkpoints' / 'last' / 'trainable.safetensors')
    assert hashlib.sha1(b''.join(sd[k].numpy().tobytes() for k in sorted(sd))).hexdigest() == r0['all']   # the main process's state
    rows = list(csv.DictReader(open(run_dir / 'log.csv')))
    assert [r['step'] for r in rows] == ['1', '2', '3', '4', '5'] and [r['stage'] for r in rows[:2]] == ['warmup'] * 2
    assert rows[-1]['dev_bleu4'] != '' and float(rows[-1]['loss']) > 0
    model, cfg = load_run(run_dir, 'last')
    assert cfg.train.max_steps == 5 and not model.training
    m = evaluate_run(run_dir, 'test', 'best', num_beams=2, progress=False, verbose=False)
    assert 0 <= m['bleu4'] <= 100 and len(m['hyps']) == len(m['refs']) == 8 and (run_dir / 'eval-test').is_dir()


@needs_torchrun
def test_epochs_mean_epochs_on_one_or_two_processes(tmp_path):
    "One config in epochs and samples, trained by 1 and by 2 processes: the same epochs and the same samples seen (half the steps on two)."
    out = smoke_run().parent
    n = len(FeatureStore(out / 'data' / 'features'))   # records of all splits; the training split is read below
    from spamo.data import load_dataset
    n_train = len(load_dataset('phoenix14t', out / 'data' / 'synthsign', 'train'))
    params = dict(data_root=str(out / 'data' / 'synthsign'), features=str(out / 'data' / 'features'), llm=str(out / 'llm'),
                  llm_dtype='fp32', precision='fp32', adapter_hidden=32, epochs=2, eval_every_epochs=2, save_every_epochs=2,
                  vt_warmup_samples=8, lr_warmup_samples=8, batch_size=2, lr=1e-3, num_examples=0, num_beams=1, max_new_tokens=8, num_workers=1)
    script = tmp_path / 'train.py'; script.write_text(TRAIN)
    one, two = tmp_path / 'one', tmp_path / 'two'; one.mkdir(); two.mkdir()
    run([sys.executable, str(script), json.dumps(params | dict(run_dir=str(one / 'run'))), one])
    torchrun(script, json.dumps(params | dict(run_dir=str(two / 'run'))), two)
    s1, s2 = (json.loads((d / 'rank0.json').read_text())['summary'] for d in (one, two))
    assert n > n_train and n_train % 4 == 0, (n, n_train)                      # every sample fits a global batch of 2 x 2
    assert (s1['processes'], s2['processes']) == (1, 2)
    assert s1['epochs'] == s2['epochs'] == 2 and s1['samples_seen'] == s2['samples_seen'] == 2 * n_train
    assert (s1['steps'], s2['steps']) == (n_train, n_train // 2)              # batch 2 per process: half the steps on two
    plans = [json.loads((d / 'run' / 'schedule.json').read_text()) for d in (one, two)]
    assert [(p['vt_warmup_steps'], p['lr_warmup_steps']) for p in plans] == [(4, 4), (2, 2)]   # 8 samples: 4 steps of 2, 2 of 4
