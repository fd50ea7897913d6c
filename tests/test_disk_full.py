"""A full disk: extraction and checkpoint saves stop with a named error (`DiskFull`), lose nothing already written, and resume
cleanly once space is freed. On a small tmpfs the test mounts (as root), else with the failing write injected."""
import errno, os, shutil, subprocess
from pathlib import Path
import pytest, torch
import spamo.store
from spamo.store import DiskFull, FeatureStore, read_header, write_atomic
from spamo.features import extract
from spamo.data import load_dataset
from spamo.testing import smoke_run, toy_manifest
from spamo.checkpoint import load_checkpoint, load_run, save_checkpoint


class SmallDisk:
    "A folder of `size` bytes: a tmpfs mounted there, or (where mounting is not allowed) writes failing as a full disk would."
    def __init__(self, path: Path, size: int, monkeypatch):
        self.path, self.size = path, size; path.mkdir(parents=True)
        self.mounted, why = False, 'SPAMO_NO_MOUNT=1'   # which tries the injected path where mounting works
        if not os.environ.get('SPAMO_NO_MOUNT'):
            try:
                r = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path)], capture_output=True, text=True)
                self.mounted, why = r.returncode == 0, r.stderr.strip()
            except OSError as e: why = str(e)
        if not self.mounted:
            real = spamo.store._write
            def write(f, data):
                if Path(f.name).resolve().is_relative_to(self.path.resolve()) and self.used() + len(data) > self.size:
                    f.write(data[:max(0, self.size - self.used())]); raise OSError(errno.ENOSPC, 'No space left on device')
                real(f, data)
            monkeypatch.setattr(spamo.store, '_write', write)
        self.how = 'tmpfs' if self.mounted else f'injected write failure ({why[:80]})'

    def used(self) -> int: return sum(p.stat().st_size for p in self.path.rglob('*') if p.is_file())

    def resize(self, size: int):
        "Free space: a larger tmpfs, or a larger budget."
        self.size = size
        if self.mounted: subprocess.run(['mount', '-o', f'remount,size={size}', str(self.path)], check=True)

    def close(self):
        if self.mounted: subprocess.run(['umount', str(self.path)], check=True)


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    disks = []
    def make(size): disks.append(SmallDisk(tmp_path / f'disk{len(disks)}', size, monkeypatch)); return disks[-1]
    yield make
    for d in disks: d.close()


def test_extraction_stops_on_a_full_disk_and_resumes(tmp_path, small_disk):
    "The default on_error='skip' does not count a full disk as bad videos: it stops, keeps whole records, resumes when freed."
    samples = load_dataset('manifest', toy_manifest(tmp_path / 'toy'), 'train')
    disk = small_disk(48 * 1024)
    with pytest.raises(DiskFull, match='no space left on the device writing .*records written are kept: free space and re-run'):
        extract(samples, disk.path / 'store', 'tiny', 'tiny', progress=False, recipe='spamo')
    kept = sorted((disk.path / 'store' / 'records').glob('*.safetensors'))
    print(f'{disk.how}: {len(kept)} of {len(samples)} records fit')
    assert 0 < len(kept) < len(samples), len(kept)
    assert all(read_header(p) is not None for p in kept)                       # each kept record whole
    assert not list((disk.path / 'store').rglob('.*.tmp'))                       # no partial file left
    disk.resize(4 * 1024 * 1024)
    r = extract(samples, disk.path / 'store', 'tiny', 'tiny', progress=False, recipe='spamo')
    assert (len(r['skipped']), len(r['extracted']), r['failed']) == (len(kept), len(samples) - len(kept), [])
    assert len(FeatureStore(disk.path / 'store')) == len(samples)


def test_a_checkpoint_save_on_a_full_disk_keeps_the_last_one(tmp_path, small_disk):
    "A save that runs out of space raises DiskFull naming the checkpoint; the one saved before loads whole; freed, saving works."
    model, cfg = load_run(smoke_run())
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    size = sum(p.stat().st_size for p in save_checkpoint(tmp_path / 'probe', model, opt, sched, 1, 0.0, cfg).iterdir())
    disk = small_disk(int(size * 1.6) + 64 * 1024)
    ck = save_checkpoint(disk.path / 'last', model, opt, sched, 1, 0.0, cfg)
    with pytest.raises(DiskFull, match='the checkpoint last saved before is whole: free space and resume the run'):
        save_checkpoint(ck, model, opt, sched, 2, 0.0, cfg)
    assert sorted(p.name for p in disk.path.iterdir()) == ['last']               # no last.tmp or last.old left
    assert load_checkpoint(ck, model, opt, sched)['step'] == 1
    disk.resize(int(size * 3) + 64 * 1024)
    save_checkpoint(ck, model, opt, sched, 2, 0.0, cfg)
    assert load_checkpoint(ck, model, opt, sched)['step'] == 2


def test_a_results_file_is_replaced_whole_or_not_at_all(small_disk):
    disk = small_disk(16 * 1024)
    f = write_atomic(disk.path / 'table.csv', 'row,bleu4\nSE,18.2\n')
    with pytest.raises(DiskFull, match='table.csv'): write_atomic(f, 'x' * 64 * 1024)
    assert f.read_text() == 'row,bleu4\nSE,18.2\n' and [p.name for p in disk.path.iterdir()] == ['table.csv']
