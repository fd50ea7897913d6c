"""The documentation site: notebooks committed with their outputs (fit to publish), the sidebar, nbdev.yml, the deploy
workflow, and the offline site check failing on a broken link or image. (CI runs the whole check: .ci/docs_check.py.)"""
import ast, base64, importlib.util, json, re, shutil, sys
from pathlib import Path
import pytest, yaml

REPO = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (REPO / 'nbs').rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts)
spec = importlib.util.spec_from_file_location('docs_check', REPO / '.ci' / 'docs_check.py')
docs_check = importlib.util.module_from_spec(spec); spec.loader.exec_module(docs_check)

QUIET = re.compile(r'^(test_\w+|assert\w*|plt\.close|print)$')  # calls whose value is not shown
NONE_METHODS = {'close', 'axis', 'savefig', 'legend', 'tight_layout', 'zero_grad', 'backward', 'step', 'write_text', 'write_bytes',
                'mkdir', 'unlink', 'touch', 'update', 'append', 'extend', 'clear', 'sort', 'manual_seed', 'set_num_threads'}  # they return None


def shows_a_value(src: str) -> bool:
    "Whether a cell ends in an expression Jupyter displays (not a test, an assert or a `;`-silenced line)."
    try: tree = ast.parse(src)
    except SyntaxError: return False
    if not tree.body or not isinstance(tree.body[-1], ast.Expr) or src.rstrip().endswith(';'): return False
    v = tree.body[-1].value
    if isinstance(v, ast.Call):
        f = v.func
        name = f.id if isinstance(f, ast.Name) else f'{f.value.id}.{f.attr}' if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ''
        if QUIET.match(name) or (isinstance(f, ast.Attribute) and f.attr in NONE_METHODS): return False
    return not isinstance(v, ast.Constant)


def missing_outputs(nb: dict) -> list[str]:
    "Ids of the cells that show a value or a picture when run but carry no output."
    out = []
    for c in nb['cells']:
        if c['cell_type'] != 'code' or c.get('outputs'): continue
        s = ''.join(c['source'])
        if docs_check.cell_flags(s) & {'hide', 'export', 'exports', 'exporti', 'slow', 'cuda', 'eval'} or 'nbdev_export(' in s: continue
        if shows_a_value(s) or re.search(r'\b(display|plt\.(imshow|plot|subplots|figure))\(', s): out.append(c.get('id', '?'))
    return out


@pytest.mark.parametrize('path', NBS, ids=[str(p.relative_to(REPO / 'nbs')) for p in NBS])
def test_notebook_is_committed_with_its_outputs(path):
    "Every check that shows a value, every table and picture carries its output (run .ci/fill_outputs.py)."
    nb = json.loads(path.read_text())
    assert not missing_outputs(nb), f'{path.name}: cells without their outputs {missing_outputs(nb)}: run OMP_NUM_THREADS=1 python .ci/fill_outputs.py {path.relative_to(REPO)}'
    if docs_check.shows_code(nb):
        assert any(c.get('outputs') for c in nb['cells'] if c['cell_type'] == 'code'), f'{path.name} shows nothing'


MACHINE = re.compile(r'(?<![\w<])(/tmp/|/work/|/root/|/home/\w|/Users/\w|[A-Z]:\\\\Users)')

@pytest.mark.parametrize('path', NBS, ids=[str(p.relative_to(REPO / 'nbs')) for p in NBS])
def test_outputs_are_fit_to_publish(path):
    "No progress bars or warnings (stderr), no machine paths, no widget views without state, pictures of a few tens of KB."
    for c in json.loads(path.read_text())['cells']:
        for o in c.get('outputs', []):
            where = f"{path.name} cell {c.get('id')}"
            assert not (o['output_type'] == 'stream' and o.get('name') == 'stderr'), f'{where}: stderr output'
            data = o.get('data', {})
            assert 'application/vnd.jupyter.widget-view+json' not in data, f'{where}: a widget view'
            text = ''.join(o.get('text', '')) + ''.join(''.join(v) for k, v in data.items() if k.startswith('text/'))
            assert not MACHINE.search(text) and str(REPO) not in text, f'{where}: a machine path in {MACHINE.search(text) and text[max(0, MACHINE.search(text).start() - 40):][:120]!r}'
            if 'image/png' in data: assert len(base64.b64decode(''.join(data['image/png']))) <= 60_000, f'{where}: picture over 60 KB'


def test_the_output_rule_tells_a_check_from_a_display():
    assert shows_a_value('x = 1\nx') and shows_a_value('df.head()') and shows_a_value("dict(a=1)")
    assert not shows_a_value('test_eq(a, b)') and not shows_a_value('plt.plot(x);') and not shows_a_value('x = 1') and not shows_a_value('print(1)')
    assert missing_outputs(dict(cells=[dict(cell_type='code', id='a', source=['x = 2\n', 'x'], outputs=[])])) == ['a']
    assert missing_outputs(dict(cells=[dict(cell_type='code', id='a', source=['#| hide\n', 'x'], outputs=[])])) == []


def test_every_notebook_is_in_the_sidebar_and_nbdev_yml_is_nbdevs():
    quarto = yaml.safe_load((REPO / '_quarto.yml').read_text())
    entries = docs_check.sidebar_entries(quarto)
    assert sorted(entries) == sorted(str(p.relative_to(REPO / 'nbs')) for p in NBS)
    sections = [s['section'] for s in quarto['website']['sidebar']['contents']]
    assert sections == ['Get started', 'Tutorials', 'Reproduce the paper', 'API']
    assert (REPO / 'nbs' / '_quarto.yml').resolve() == (REPO / '_quarto.yml').resolve()
    from nbdev.quarto import _nbdev_yml
    with docs_check.in_project(REPO) as cfg: pass
    vals = {k: cfg[k] for k in ['title', 'description', 'branch', 'git_url', 'doc_host', 'doc_baseurl']} | dict(doc_path=cfg.doc_path.name)
    assert (REPO / 'nbs' / 'nbdev.yml').read_text() == _nbdev_yml.format(**vals)
    assert cfg.custom_sidebar  # the sidebar is _quarto.yml's; nbdev must not write its own sidebar.yml


def test_deploy_workflow_builds_with_nbdev_docs_and_publishes_the_doc_path():
    wf = yaml.safe_load((REPO / '.github' / 'workflows' / 'deploy.yaml').read_text())
    on = wf.get('on', wf.get(True))  # YAML 1.1 reads a bare `on` as true
    assert on['push']['branches'] == ['main'] and 'workflow_dispatch' in on
    steps = wf['jobs']['deploy']['steps']
    run = '\n'.join(s.get('run', '') for s in steps)
    assert 'pip install -e ".[dev]"' in run and 'nbdev_docs' in run and 'python .ci/docs_check.py' in run
    assert run.index('pip install -e') < run.index('nbdev_docs')
    pages = next(s for s in steps if s.get('uses', '').startswith('peaceiris/actions-gh-pages'))
    assert pages['with']['publish_dir'] == './_docs' and wf['permissions']['contents'] == 'write'


def _project(tmp_path, page_md: str):
    "A two-page nbdev project: index and a.ipynb whose markdown is `page_md`."
    root = tmp_path / 'proj'; (root / 'nbs').mkdir(parents=True)
    shutil.copy(REPO / 'settings.ini', root / 'settings.ini')
    cell = lambda kind, src, **kw: dict(cell_type=kind, id=f'c{abs(hash(src)) % 10**8}', metadata={}, source=src, **kw)
    def nb(cells): return json.dumps(dict(cells=cells, metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')), nbformat=4, nbformat_minor=5))
    (root / 'nbs' / 'index.ipynb').write_text(nb([cell('markdown', '# proj\n\n> a project'), cell('markdown', 'See [page a](a.ipynb).')]))
    (root / 'nbs' / 'a.ipynb').write_text(nb([cell('markdown', '# A\n\n> page a'), cell('markdown', page_md),
                                            cell('code', '1 + 1', outputs=[dict(output_type='execute_result', data={'text/plain': ['2']}, metadata={}, execution_count=None)], execution_count=None)]))
    (root / 'nbs' / 'pic.png').write_bytes(base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=='))
    (root / 'nbs' / '_quarto.yml').write_text(yaml.safe_dump({'project': dict(type='website'), 'metadata-files': ['nbdev.yml'],
        'website': dict(sidebar=dict(contents=[dict(section='Get started', contents=['index.ipynb', 'a.ipynb'])]))}, sort_keys=False))
    from nbdev.quarto import refresh_quarto_yml
    with docs_check.in_project(root): refresh_quarto_yml()
    return root


def test_offline_check_passes_a_sound_site_and_fails_on_a_broken_link_and_image(tmp_path):
    good = _project(tmp_path / 'good', 'Back to [the index](index.ipynb), [a section](#a), [nbdev](https://nbdev.fast.ai), ![a picture](pic.png)')
    assert docs_check.check(good, n_workers=1, verbose=False) == []
    bad = _project(tmp_path / 'bad', 'A [broken link](no_such_page.ipynb) and ![a missing picture](missing.png) and [outside](../settings.ini)')
    (bad / 'nbs' / '_quarto.yml').write_text((bad / 'nbs' / '_quarto.yml').read_text().replace('- a.ipynb', '- a.ipynb\n      - gone.ipynb'))
    problems = '\n'.join(docs_check.check(bad, n_workers=1, verbose=False))
    assert "broken link 'no_such_page.ipynb'" in problems and "broken image 'missing.png'" in problems, problems
    assert "'../settings.ini' leaves the site" in problems and "sidebar entry 'gone.ipynb'" in problems, problems
    assert docs_check.main([str(bad)]) == 1
