"""`bench/bench_extract.py` reports, side by side in one run, each dtype's throughput as a fraction of the measured matmul
peak of that dtype: fp32 always, bf16 where the CPU has native bf16 (or `SPAMO_CPU_BF16=1` says so)."""
import json, math, os, subprocess, sys
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]


def bench(switch: str) -> dict:
    env = dict(os.environ, SPAMO_CPU_BF16=switch, OMP_NUM_THREADS='1')
    p = subprocess.run([sys.executable, str(REPO / 'bench' / 'bench_extract.py'), '--tiny', '--device', 'cpu', '--frames', '1'],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('switch', ['1', '0'])
def test_bench_reports_each_dtype_against_its_own_peak(switch):
    r = bench(switch)
    want = ['bf16', 'fp32'] if switch == '1' else ['fp32']
    assert (r['info']['cpu_native_bf16'], r['info']['auto_dtype']) == (switch == '1', want[0])   # auto: bf16 only with native bf16
    assert sorted(r['peak_gflops']) == sorted(want) and all(d in r for d in want) and ('bf16' in r) == (switch == '1')
    for d in want:
        for k in ('spatial', 'motion', 'both'):
            m = r[d][k]
            assert m['opt_gflops'] > 0 and math.isclose(m['frac_of_peak'], m['opt_gflops'] / r['peak_gflops'][d], rel_tol=1e-9)
