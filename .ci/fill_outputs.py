"""Execute notebooks as `nbdev_test` does (execnb, in the notebook's folder, `slow`/`cuda` cells skipped) and save
them with their outputs, made fit to commit: no stderr (progress bars, warnings) or widget outputs, no machine paths,
pictures downscaled to a few tens of KB. Run it after changing a notebook, then `nbdev_clean`:

    OMP_NUM_THREADS=1 python .ci/fill_outputs.py nbs/06_train.ipynb ...     # or no arguments: every notebook
    FILL_FLAGS=slow ...                                                     # slow cells too (CI skips them; their outputs stay)
"""
from __future__ import annotations
import base64, io, json, os, re, sys, tempfile, time
from pathlib import Path
from docs_check import cell_flags   # .ci/ is on the path of a script run from it

ROOT = Path(__file__).resolve().parents[1]
SKIP_FLAGS = {'slow', 'cuda'} - set(os.environ.get('FILL_FLAGS', '').split())  # FILL_FLAGS=slow: run slow cells too
MAX_IMAGE_BYTES = 48_000


def machine_paths() -> list[str]:
    "Absolute paths of this machine that must not appear in committed outputs (longest first)."
    ps = {str(ROOT), str(ROOT.parent), tempfile.gettempdir(), os.path.expanduser('~'), '/tmp', '/work', '/root', '/home/'}
    return sorted((p for p in ps if p not in ('', '/')), key=len, reverse=True)


def _clean_text(t: str) -> str:
    t = re.sub(r'(?:/tmp|' + re.escape(tempfile.gettempdir()) + r')/[^\s\'"]*', '<tmp>', t)
    for p in machine_paths(): t = t.replace(p, '<repo>' if p == str(ROOT) else '<local>')
    return re.sub(r'\x1b\[[0-9;]*m', '', t)


def small_png(b64: str, limit: int = MAX_IMAGE_BYTES) -> str:
    "A PNG (base64) shrunk until it is under `limit` bytes: smaller sizes, then a 128-colour palette."
    from PIL import Image
    raw = base64.b64decode(b64)
    if len(raw) <= limit: return b64
    im = Image.open(io.BytesIO(raw)).convert('RGB')
    for scale in (1.0, 0.8, 0.65, 0.5, 0.4, 0.3):
        w, h = max(1, int(im.width * scale)), max(1, int(im.height * scale))
        x = im.resize((w, h), Image.LANCZOS).quantize(128)
        buf = io.BytesIO(); x.save(buf, 'PNG', optimize=True)
        if buf.tell() <= limit: break
    return base64.b64encode(buf.getvalue()).decode()


def clean_outputs(outputs: list) -> list:
    "Outputs fit to commit."
    out = []
    for o in outputs:
        if o.get('output_type') == 'stream':
            if o.get('name') == 'stderr': continue
            txt = _clean_text(''.join(o['text']))
            if txt.strip(): out.append(o | dict(text=txt.splitlines(True)))
            continue
        data = dict(o.get('data', {}))
        if 'application/vnd.jupyter.widget-view+json' in data:  # its state is not kept: keep its text form
            data = {k: v for k, v in data.items() if k == 'text/plain'}
        for k in list(data):
            v = data[k]
            if k == 'image/png': data[k] = small_png(v if isinstance(v, str) else ''.join(v))
            elif k.startswith('text/'): data[k] = _clean_text(v if isinstance(v, str) else ''.join(v)).splitlines(True)
        out.append(o | dict(data=data))
    return out


def fill(path: Path) -> float:
    "Execute `path` and save it with clean outputs; returns seconds."
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    path = Path(path).resolve()
    nb, t0 = read_nb(path), time.time()
    def no_eval(cell):
        if cell.cell_type != 'code' or 'nbdev_export' + '(' in cell.source: return True
        return bool(cell_flags(cell.source) & (SKIP_FLAGS | {'eval-false'}))
    os.environ['IN_TEST'] = '1'
    k = CaptureShell(path, mpl_format='png')
    k.run_cell('import matplotlib; matplotlib.rcParams["figure.dpi"] = 72')
    with working_directory(path.parent): k.run_all(nb, exc_stop=True, preproc=no_eval)
    write_nb(nb, path)
    d = json.loads(path.read_text())
    for c in d['cells']:
        if c['cell_type'] == 'code':
            c['outputs'] = clean_outputs(c.get('outputs', [])); c['execution_count'] = None
    d.get('metadata', {}).pop('widgets', None)
    path.write_text(json.dumps(d, indent=1, ensure_ascii=False) + '\n')
    return time.time() - t0


if __name__ == '__main__':
    nbs = [Path(p) for p in sys.argv[1:]] or sorted((ROOT / 'nbs').rglob('*.ipynb'))
    for p in nbs:
        if '.ipynb_checkpoints' in p.parts: continue
        print(f'{p}: {fill(p):.0f} s', flush=True)
