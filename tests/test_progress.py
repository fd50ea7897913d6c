"""Progress in the real places: stderr sent to a file (a log), a pseudo-terminal, a notebook run by papermill, a kernel
started by another program (as JupyterLab starts its own). spamo.progress's notebook checks the parts one by one."""
import fcntl, json, os, pty, re, struct, subprocess, sys, termios, textwrap, time
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
LINE = re.compile(r'^steps: (\d+)/10000 step \((\d+)%\), [\d.e+]+ (step/s|s/step), \d\d:\d\d elapsed(, \d\d:\d\d left)?(, i=\d+)?$')  # a line of 10,000 steps


def loop(bar: str, steps: int = 10_000, pause: float = 0.0005) -> str:
    "A script running `steps` steps of about `pause` seconds under `bar` ('tqdm': tqdm.auto, 'spamo': progress_bar)."
    make = 'from tqdm.auto import tqdm as bar' if bar == 'tqdm' else 'from spamo.progress import progress_bar as bar'
    return textwrap.dedent(f'''
        import time
        {make}
        with bar(total={steps}, desc='steps', unit='step') as b:
            for i in range({steps}):
                time.sleep({pause}); b.update()
                if i % 1000 == 0: b.set_postfix(i=i)
        ''')


def quiet_env(**kw) -> dict:
    "This environment without the settings that pick a mode (SPAMO_PROGRESS, CI), plus `kw`."
    env = {k: v for k, v in os.environ.items() if k not in ('SPAMO_PROGRESS', 'SPAMO_PROGRESS_SECONDS', 'CI')}
    return env | {'PYTHONPATH': str(REPO)} | kw


def to_file(script: str, tmp_path, **env) -> tuple[str, float]:
    "Run `script` with stderr sent to a file (no terminal); the file's text and the seconds it took."
    log, t0 = tmp_path / 'stderr.log', time.time()
    with open(log, 'w') as f:
        subprocess.run([sys.executable, '-c', script], stderr=f, stdout=subprocess.DEVNULL, env=quiet_env(**env), check=True, timeout=300)
    return log.read_bytes().decode(), time.time() - t0   # bytes: read_text would turn each '\r' into '\n'


def records(text: str) -> list[str]:
    "What a log viewer shows as lines: the text split at each '\\n' or '\\r' (CI pages turn a '\\r' into a line)."
    return [r for r in re.split(r'[\r\n]', text) if r.strip()]


def tenths(lines: list) -> list:
    "The tenth of the total each log line reached; a busy machine may merge two tenths into one line, never repeat one."
    assert all(LINE.match(l) for l in lines), lines
    return [int(LINE.match(l)[2]) // 10 for l in lines]


def test_a_log_file_holds_a_few_plain_lines_and_the_last(tmp_path):
    "stderr to a file: 10,000 steps leave a line per tenth, plain, the last at 100%; tqdm's bar leaves its redraws."
    before, t_before = to_file(loop('tqdm'), tmp_path)
    after, t_after = to_file(loop('spamo'), tmp_path)
    print(f'\n10,000 steps, stderr to a file: tqdm.auto {len(records(before))} lines ({len(before)} bytes, {before.count(chr(13))} '
          f'\\r, {t_before:.1f} s); progress_bar {len(records(after))} lines ({len(after)} bytes, {t_after:.1f} s)')
    assert '\r' in before and len(records(before)) > 10                   # tqdm redraws into the file
    assert '\r' not in after and '\x1b' not in after and after.endswith('\n')
    lines = after.splitlines()
    t = tenths(lines)                                                      # under 30 s: the tenths alone, each once
    assert 5 <= len(lines) <= 10 and t == sorted(set(t)) and t[-1] == 10, lines
    assert lines[-1].startswith('steps: 10000/10000 step (100%), ') and lines[-1].endswith(', i=9000')


def test_timed_lines_stay_bounded(tmp_path):
    "No total, so no tenths: with SPAMO_PROGRESS_SECONDS=0.5 a 3-second loop writes a line at most every half second, and its end."
    script = 'import time\nfrom spamo.progress import progress_bar\nfor _ in progress_bar(iter(range(30)), desc="steps", unit="step"): time.sleep(0.1)'
    log, took = to_file(script, tmp_path, SPAMO_PROGRESS_SECONDS='0.5')
    lines = log.splitlines()
    print(f'\n30 steps of 0.1 s ({took:.1f} s), no total, a line at least 0.5 s apart: {len(lines)} lines')
    assert '\r' not in log and 4 <= len(lines) <= took / 0.5 + 1, (lines, took)
    assert all(re.match(r'^steps: \d+ step, [\d.]+ step/s, 00:0\d elapsed$', l) for l in lines), lines
    assert lines[-1].startswith('steps: 30 step, ') and [int(l.split()[1]) for l in lines] == sorted({int(l.split()[1]) for l in lines})


def on_a_terminal(script: str, **env) -> str:
    "Run `script` with stderr on a pseudo-terminal; what the terminal received."
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 100, 0, 0))   # 100 columns (a new pty has 0: tqdm would draw nothing)
    p = subprocess.Popen([sys.executable, '-c', script], stderr=slave, stdout=subprocess.DEVNULL, env=quiet_env(**env))
    os.close(slave)
    out = b''
    while True:
        try: chunk = os.read(master, 65536)
        except OSError: break                     # EIO: the child closed the terminal
        if not chunk: break
        out += chunk
    os.close(master); assert p.wait(timeout=300) == 0
    return out.decode(errors='replace')


def test_a_terminal_keeps_tqdms_bar():
    "A pseudo-terminal gets tqdm's bar, redrawn with '\\r'; SPAMO_PROGRESS=lines and =off override it."
    out = on_a_terminal(loop('spamo', steps=300, pause=0.001))
    assert '\r' in out and re.search(r'steps: 100%\|.+\| 300/300 ', out), out[-300:]
    lines = on_a_terminal(loop('spamo', steps=300, pause=0.001), SPAMO_PROGRESS='lines')
    assert '\r\n' in lines and not re.search(r'\r(?!\n)', lines)   # the terminal ends lines with \r\n; no redraws
    assert lines.splitlines()[-1].startswith('steps: 300/300 step (100%)'), lines
    assert on_a_terminal(loop('spamo', steps=30, pause=0), SPAMO_PROGRESS='off') == ''
    assert on_a_terminal(loop('spamo', steps=30, pause=0), CI='true').splitlines()[-1].startswith('steps: 30/30 step (100%)')


def notebook(path: Path, code: str):
    "A one-cell notebook."
    nb = dict(cells=[dict(cell_type='code', id='c0', metadata={}, execution_count=None, outputs=[], source=code)],
              metadata={'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}}, nbformat=4, nbformat_minor=5)
    path.write_text(json.dumps(nb))


def papermill(tmp_path, bar: str) -> dict:
    "Run the 10,000-step loop under `bar` as a notebook through papermill; the output notebook."
    notebook(tmp_path / f'{bar}.ipynb', loop(bar))
    out = tmp_path / f'{bar}-out.ipynb'
    subprocess.run([sys.executable, '-m', 'papermill', str(tmp_path / f'{bar}.ipynb'), str(out), '-k', 'python3', '--no-progress-bar'],
                   env=quiet_env(), cwd=tmp_path, check=True, capture_output=True, timeout=300)
    return json.loads(out.read_text())


def widgets(nb: dict) -> list:
    return [o for c in nb['cells'] for o in c.get('outputs', []) if 'application/vnd.jupyter.widget-view+json' in o.get('data', {})]


def stderr_text(nb: dict) -> str:
    return ''.join(''.join(o['text']) for c in nb['cells'] for o in c.get('outputs', []) if o.get('name') == 'stderr')


def test_a_papermill_job_writes_lines_into_its_output_notebook(tmp_path):
    "Run by papermill (no SPAMO_PROGRESS set), progress_bar writes the tenths as stderr text; tqdm.auto leaves a widget nobody sees."
    before, after = papermill(tmp_path, 'tqdm'), papermill(tmp_path, 'spamo')
    frozen = ''.join(widgets(before)[0]['data']['text/plain']) if widgets(before) else ''
    print(f'\npapermill, 10,000 steps: tqdm.auto {len(widgets(before))} widget output (its text: {frozen!r}), '
          f'{len(records(stderr_text(before)))} stderr lines; progress_bar {len(widgets(after))} widgets, {len(stderr_text(after).splitlines())} stderr lines')
    assert widgets(before)                                                   # the problem, as papermill saves it
    assert not widgets(after) and 'widgets' not in after['metadata']
    lines = stderr_text(after).splitlines()
    t = tenths(lines)
    assert 5 <= len(lines) <= 10 and t == sorted(set(t)) and t[-1] == 10, lines


def kernel_says(code: str, **env) -> str:
    "Start a kernel from this process (as JupyterLab starts one from its server), run `code`, return what it printed."
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name='python3', env=quiet_env(**env))
    try:
        out = []
        kc.execute_interactive(code, timeout=60, output_hook=lambda m: out.append(m['content'].get('text', '')) if m['msg_type'] == 'stream' else None)
        return ''.join(out).strip()
    finally:
        kc.stop_channels(); km.shutdown_kernel(now=True)


def test_a_kernel_started_by_a_frontend_keeps_the_widget():
    "A kernel whose launcher is no notebook runner (JupyterLab's case) gets tqdm.auto's widget; SPAMO_PROGRESS=lines still wins."
    code = ('from spamo.progress import progress_bar, progress_mode\nfrom tqdm.notebook import tqdm_notebook\nb = progress_bar(total=3)\n'
            'print(progress_mode(), "widget" if isinstance(b, tqdm_notebook) else type(b).__name__)')
    assert kernel_says(code) == 'bars widget'
    assert kernel_says(code, SPAMO_PROGRESS='lines') == 'lines ProgressLines'
