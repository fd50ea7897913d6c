"""README.md from its source, nbs/index.ipynb, where Quarto (which `nbdev_readme` needs) is absent, as here and in CI.

index.ipynb holds only markdown cells, so the README is those cells in order, a blank line apart: what
`nbdev_readme` renders from them, without Quarto's re-wrapping. `python .ci/readme.py` writes README.md;
`python .ci/readme.py --check` (in .ci/run) fails when README.md is not what index.ipynb makes.
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme() -> str:
    cells = json.loads((ROOT / 'nbs' / 'index.ipynb').read_text(encoding='utf-8'))['cells']
    if code := [i for i, c in enumerate(cells) if c['cell_type'] == 'code' and ''.join(c['source']).strip()]:
        sys.exit(f'nbs/index.ipynb: cells {code} hold code; render the README with nbdev_readme (Quarto) instead')
    return '\n\n'.join(''.join(c['source']).strip() for c in cells if c['cell_type'] == 'markdown') + '\n'


if __name__ == '__main__':
    out, text = ROOT / 'README.md', readme()
    if '--check' in sys.argv[1:]:
        if out.read_text(encoding='utf-8') != text:
            sys.exit('README.md is not what nbs/index.ipynb makes: run `python .ci/readme.py` and commit README.md')
        print('README.md matches nbs/index.ipynb')
    else: out.write_text(text, encoding='utf-8')
