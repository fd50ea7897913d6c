"""The results page and the demo notebook say what their numbers are (issue 27 item 3): stand-ins explained, each
metric that was not scored given a reason (never a library's raw error), each "n/a" a reason, and the demo's smoke
output labelled. Reads the committed notebooks and results files: no kernel runs."""
import json, re
from pathlib import Path
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RAW_ERRORS = ('Traceback', "couldn't connect", 'Check your internet connection', 'Errno', 'relative import')

def cells(name): return json.loads((REPO / 'nbs' / name).read_text(encoding='utf-8'))['cells']
def src(c): return ''.join(c['source'])
def shown(c) -> str: return ''.join(''.join(o.get('text', '')) + ''.join(''.join(v) for v in o.get('data', {}).values() if isinstance(v, (list, str)))
                                    for o in c.get('outputs', []))


def test_results_page_names_no_raw_error_and_every_na_has_a_reason():
    page = cells('results.ipynb')
    text = '\n'.join(shown(c) for c in page)
    assert not [e for e in RAW_ERRORS if e in text], [e for e in RAW_ERRORS if e in text]
    for csv in sorted((REPO / 'results').glob('*.csv')):
        notes = ' '.join(pd.read_csv(csv).get('notes', pd.Series(dtype=str)).dropna())
        assert not [e for e in RAW_ERRORS if e in notes], csv.name
    (ordering,) = [shown(c) for c in page if 'T_ordering' in shown(c)]
    assert 'fewer than 2 rows' not in ordering
    assert re.search(r'figure4-miniature.*?n/a: no paper numbers here', ordering, re.S)
    assert re.search(r'table7-miniature.*?n/a: no paper numbers here', ordering, re.S)


def test_results_page_explains_the_stand_ins():
    page = cells('results.ipynb')
    prose = '\n'.join(src(c) for c in page if c['cell_type'] == 'markdown')
    for what in ('SynthSign', "Table 2's \"How2Sign\" row is the same run as Table 1's", 'Table 7', 'Euclidean', 'BLEURT',
                 'Flan-T5-XL" stand-in (width 192)'):
        assert what in prose, what
    (table,) = [shown(c) for c in page if 'T_stand-ins' in shown(c)]
    rows = pd.read_html(__import__('io').StringIO(table))[0]
    t4 = rows[rows.table == 'table4'].set_index('row')['in miniature']
    assert t4['Flan-T5-XL (3B)'] == 'tiny T5, width 192, pretrained 200 steps' and t4['W/o LLM (60.5M)'].endswith('no pretraining')
    t2 = rows[rows.table == 'table2'].iloc[0]
    assert t2['data'] == 'How2Sign: SynthSign' and 'table1' in t2['same run as']


def test_demo_notebook_labels_its_smoke_output():
    nb = cells('09_demo.ipynb')
    (i,) = [k for k, c in enumerate(nb) if c['cell_type'] == 'code' and 'results = demo(' in src(c)]
    above = next(nb[k] for k in range(i - 1, -1, -1) if nb[k]['cell_type'] == 'markdown')
    assert src(above).startswith(':::{.callout-warning}') and '## Smoke size' in src(above)
    out = shown(nb[i])
    assert 'smoke size (' in out and 'these numbers mean nothing' in out, out[-500:]
