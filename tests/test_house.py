"""The house rules of spamo's layout, checked on the source: module order, private names, sizes, where test code lives."""
import ast, json, re
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / 'spamo'
TOP = {'cli'}  # the command line sits at the top of the house and dispatches to every module


def notebook_rank() -> dict:
    "Module name -> (number, letters) of the notebook that exports it."
    out = {}
    for nb in sorted((REPO / 'nbs').glob('[0-9]*.ipynb')):
        src = '\n'.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'])
        m = re.search(r'#\|\s*default_exp\s+([\w.]+)', src)
        num, letters = re.match(r'(\d+)([a-z]*)_', nb.name).groups()
        if m: out[m[1]] = (int(num), letters)
    return out


def modules() -> dict:
    return {p.stem: ast.parse(p.read_text()) for p in sorted(PKG.glob('*.py')) if not p.stem.startswith('_')}


def spamo_imports(tree) -> list:
    "(module, [names]) for every import of a spamo module anywhere in `tree` (functions included)."
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom):
            mod = n.module or ''
            if n.level == 1: out.append((mod.split('.')[0], [a.name for a in n.names]))
            elif mod.startswith('spamo.'): out.append((mod.split('.')[1], [a.name for a in n.names]))
            elif mod == 'spamo': out += [(a.name, []) for a in n.names]
        elif isinstance(n, ast.Import):
            out += [(a.name.split('.')[1], []) for a in n.names if a.name.startswith('spamo.')]
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and (m := ENTRY.match(n.value)):
            out.append((m[1], [m[2]]))   # a 'spamo.module:function' string (a registry entry) imports that module when used
    return out


ENTRY = re.compile(r'^spamo\.(\w+):(\w+)$')

def entry_strings(tree) -> list:
    "(module, function) of every 'spamo.module:function' string in `tree`."
    return [(e[1], e[2]) for c in ast.walk(tree) if isinstance(c, ast.Constant) and isinstance(c.value, str) and (e := ENTRY.match(c.value))]


def test_entry_strings_are_followed():
    "A registry entry given as 'spamo.module:function' counts as an import of that module, and names a function it defines."
    assert spamo_imports(ast.parse("R.register('x', 'spamo.demo:prepare_tiny_llm')")) == [('demo', ['prepare_tiny_llm'])]
    mods = modules()
    bad = [f'{name}: spamo.{m}:{f}' for name, tree in mods.items() for m, f in entry_strings(tree)
           if m not in mods or f not in {n.name for n in mods[m].body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}]
    assert not bad, bad


def test_every_module_comes_from_a_numbered_notebook():
    assert set(modules()) <= set(notebook_rank()), set(modules()) - set(notebook_rank())


def test_no_module_imports_a_higher_numbered_one():
    rank, bad = notebook_rank(), []
    for name, tree in modules().items():
        if name in TOP: continue
        bad += [f'{name} {rank[name]} imports {m} {rank[m]}' for m, _ in spamo_imports(tree) if rank[m] > rank[name]]
    assert not bad, bad


def test_no_module_imports_a_private_name_of_another():
    bad = [f'{name} imports {n} from {m}' for name, tree in modules().items() for m, names in spamo_imports(tree)
           for n in names if n.startswith('_')]
    assert not bad, bad


def test_modules_stay_small():
    sizes = {p.name: len(p.read_text().splitlines()) for p in PKG.glob('*.py') if p.name != '_modidx.py'}
    assert max(sizes.values()) <= 450, {k: v for k, v in sizes.items() if v > 450}


TEST_ONLY = re.compile(r'^(tiny_|toy_|smoke_|train_tokenizer$|pretrain_denoiser$|mask_words$|prepare_tiny_llm$|prepare_synthsign$)')

def registered(n) -> bool:
    "Whether a definition is a registry entry (`@REGISTRY.register(...)`)."
    return any(isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == 'register' for d in n.decorator_list)


def test_test_code_lives_in_testing_demo_and_tiny():
    "Toy data, tokenizer training and smoke runs live only in spamo.testing, spamo.demo and spamo.tiny (the tiny LLMs, a registry); a tiny encoder elsewhere is a registry entry of its own notebook (with its config)."
    bad = []
    for name, tree in modules().items():
        if name in ('testing', 'demo', 'tiny'): continue
        entries = any(isinstance(n, ast.FunctionDef) and registered(n) and n.name.startswith('tiny_') for n in tree.body)
        for n in tree.body:
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and TEST_ONLY.match(n.name.lower()):
                if not (registered(n) or (entries and re.match(r'^tiny_\w+_config$', n.name))): bad.append(f'{name}.{n.name}')
            if isinstance(n, ast.Assign):
                bad += [f'{name}.{t.id}' for t in n.targets if isinstance(t, ast.Name) and re.match(r'^(TINY|TOY|SMOKE)_', t.id)
                        and not (entries and t.id.startswith('TINY_'))]
    assert not bad, bad


def test_no_entry_points_up_the_house():
    "No registry entry is a 'spamo.module:function' string of a higher-numbered module (the demo's tiny encoders were)."
    rank = notebook_rank()
    bad = [f'{name} -> spamo.{m}:{f}' for name, tree in modules().items() if name not in TOP
           for m, f in entry_strings(tree) if rank.get(m, (0, '')) > rank[name]]
    assert not bad, bad


def test_methods_are_patched_not_assigned():
    "`Cls.method = f` at module level makes `f` a module export; fastcore's @patch does not."
    bad = [f'{name}: {ast.unparse(t)}' for name, tree in modules().items() for n in tree.body if isinstance(n, ast.Assign)
           for t in n.targets for e in (t.elts if isinstance(t, ast.Tuple) else [t]) if isinstance(e, ast.Attribute)]
    assert not bad, bad


def test_runs_are_loaded_from_the_model_module():
    "Translation, evaluation and analysis take the model, the data and run loading from spamo.model, not the training job."
    mods = modules()
    for name in ('translate', 'evaluate', 'analysis'):
        assert 'train' not in [m for m, _ in spamo_imports(mods[name])], name
    assert [names for m, names in spamo_imports(mods['demo']) if m == 'train'] == [['train']]  # the demo trains: the loop only


def test_job_parameters_are_the_config_fields():
    "The parameters cell of nbs/06_train.ipynb names the preset and exactly the fields of RunConfig, each None (the preset's)."
    from spamo.config import config_fields
    nb = json.loads((REPO / 'nbs' / '06_train.ipynb').read_text())
    src = next(''.join(c['source']) for c in nb['cells'] if 'parameters' in c['metadata'].get('tags', []))
    names = {l.split(':')[0].strip() for l in src.splitlines() if l.strip() and not l.startswith('#')}
    assert names == config_fields() | {'preset'}, names ^ (config_fields() | {'preset'})
    g = {}; exec(src, g)
    assert g['preset'] == 'smoke' and all(g[k] is None for k in config_fields())   # no default written here: the presets hold them


@pytest.mark.parametrize('config', sorted((REPO / 'configs').glob('*.yaml')), ids=lambda p: p.name)
def test_dataset_configs_name_only_config_fields(config):
    "Every config file names a preset and only settings, each of its type."
    from spamo.presets import read_params, resolve_config
    params = read_params(config)
    assert params.get('preset') and params['preset'] != 'smoke', config
    resolve_config(**params)


def test_notebooks_cite_no_file_outside_the_repository():
    bad = [nb.name for nb in (REPO / 'nbs').glob('*.ipynb') if re.search(r'\bNOTES\b|this machine\b|this session', nb.read_text())]
    assert not bad, bad


def exported_cells() -> list:
    "(lines, notebook, first line) of every exported cell of the numbered notebooks, its `#|` lines included."
    out = []
    for nb in sorted((REPO / 'nbs').glob('[0-9]*.ipynb')):
        for c in json.loads(nb.read_text())['cells']:
            s = ''.join(c['source']).rstrip('\n')
            if c['cell_type'] == 'code' and re.match(r'#\|\s*export', s):
                out.append((len(s.splitlines()), nb.name, s.splitlines()[1] if '\n' in s else s))
    return out


def test_cells_stay_nbdev_size():
    "Exported cells: median at most 12 lines, none over 30 (nbdev's median is 11): one idea per cell, prose between."
    import statistics
    cells = exported_cells()
    assert statistics.median(n for n, *_ in cells) <= 12
    assert not [c for c in cells if c[0] > 30], sorted(c for c in cells if c[0] > 30)
