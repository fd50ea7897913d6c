"""The tutorials say what they need and label what is smoke: each opens with a "Before you start" callout naming its data
(with licence), its hub downloads (with sizes), logins, CUDA torch, bitsandbytes and an estimated time and memory; and
every output that a tiny run produced sits under a "Smoke size" callout. Pure JSON and YAML reading: no kernel runs."""
import ast, json, re
from pathlib import Path
import pytest, yaml

REPO = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((REPO / 'nbs' / 'tutorials').glob('*.ipynb'))
IDS = [f'tutorials/{p.name}' for p in TUTORIALS]   # as tests/test_docs.py names them: `-k tutorials` selects both

DATASETS = {  # the name spamo's --dataset / `dataset:` takes -> (name on the page, licence, dataset page)
    'phoenix14t': ('PHOENIX-2014-T', 'CC BY-NC-SA 3.0', 'https://www-i6.informatik.rwth-aachen.de/~koller/RWTH-PHOENIX-2014-T/'),
    'how2sign': ('How2Sign', 'CC BY-NC 4.0', 'https://how2sign.github.io/'),
    'csl_daily': ('CSL-Daily', 'research use', 'http://home.ustc.edu.cn/~zhouh156/dataset/csl-daily/')}
HUB = re.compile(r'\b(?:google|openai|MCG-NJU|meta-llama|Qwen|facebook|mistralai|microsoft|HuggingFaceTB|TinyLlama|EleutherAI|bigscience)'
                 r'/[\w.-]*\w')   # hub ids of the organisations whose models spamo runs (a local path like data/x never matches)
GATED = ('meta-llama/', 'google/gemma')
EXTRACTION = ('openai/clip-vit-large-patch14', 'MCG-NJU/videomae-large')   # spamo extract's default encoders (spamo.features)
EXTRACTS = re.compile(r'\bspamo(?:\.cli)? (?:extract|translate)\b')         # commands that run the encoders on videos
QUANT = re.compile(r"llm_quant\W{1,4}(?:4|8)bit")
FENCE = re.compile(r'```[a-z]*\n(.*?)```', re.S)
TIME = re.compile(r'\b(?:\d+(?:[.,–-]\d+)?|a|an|one|two|three|a few)\s*(?:seconds?|minutes?|hours?|days?)\b')
MEMORY = re.compile(r'\d+(?:\.\d+)?\s*(?:GB|GiB)\b')

def src(c) -> str: return ''.join(c['source'])
def flat(s: str) -> str: return re.sub(r'\s+', ' ', s)
def load(path) -> list: return json.loads(Path(path).read_text(encoding='utf-8'))['cells']
def is_box(c) -> bool: return c['cell_type'] == 'markdown' and src(c).lstrip().startswith(':::{.callout-note}') and '## Before you start' in src(c)
def is_smoke_callout(c) -> bool: return c['cell_type'] == 'markdown' and src(c).lstrip().startswith(':::{.callout-warning}') and '## Smoke size' in src(c)


def outputs_text(c) -> str:
    return ''.join(''.join(o.get('text', '')) + ''.join(''.join(v) for k, v in o.get('data', {}).items() if k.startswith('text/plain'))
                   for o in c.get('outputs', []))


def code_text(cells) -> str:
    "What the tutorial runs or tells you to run: code cells with their outputs, and the fenced blocks of its prose."
    parts = []
    for c in cells:
        if c['cell_type'] == 'code': parts += [src(c), outputs_text(c)]
        elif not (is_box(c) or is_smoke_callout(c)): parts += FENCE.findall(src(c))
    return '\n'.join(parts)


def configs(cells) -> list[dict]:
    "The configs/*.yaml files the tutorial names (outside its box), read."
    text = '\n'.join(src(c) + outputs_text(c) for c in cells if not is_box(c))
    paths = sorted({REPO / m for m in re.findall(r'configs/[\w./-]+\.yaml', text)})
    return [yaml.safe_load(p.read_text()) or {} for p in paths if p.is_file()]


def needs(cells) -> dict:
    "Hub models, datasets and bitsandbytes the tutorial's code and configs use."
    text, cfgs = code_text(cells), configs(cells)
    hub = set(HUB.findall(text)) | {c['llm'] for c in cfgs if isinstance(c.get('llm'), str) and HUB.fullmatch(c['llm'])}
    if EXTRACTS.search(text): hub |= set(EXTRACTION)
    data = {d for d in re.findall(r'--dataset[ =](\w+)', text) if d in DATASETS} | {c['dataset'] for c in cfgs if c.get('dataset') in DATASETS}
    quant = bool(QUANT.search(text)) or any(str(c.get('llm_quant', 'none')) in ('4bit', '8bit') for c in cfgs)
    return dict(hub=hub, datasets=data, bitsandbytes=quant)


def bullet(box: str, label: str) -> str:
    "The text of the box's bullet that starts with **label**."
    m = re.search(r'^- \*\*' + re.escape(label) + r'(.*?)(?=^- \*\*|^:::)', box, re.S | re.M)
    return m[0] if m else ''


@pytest.mark.parametrize('path', TUTORIALS, ids=IDS)
def test_tutorials_box_comes_right_after_the_title(path):
    cells = load(path)
    assert cells[0]['cell_type'] == 'markdown' and src(cells[0]).startswith('# '), f'{path.name}: no title cell first'
    first_md = next(c for c in cells[1:] if c['cell_type'] == 'markdown')
    assert is_box(first_md) and first_md is cells[1], f'{path.name}: cell 1 is not the ":::{{.callout-note}} ## Before you start" box'
    assert src(cells[1]).rstrip().endswith(':::'), f'{path.name}: the box is not closed'
    assert sum(map(is_box, cells)) == 1


@pytest.mark.parametrize('path', TUTORIALS, ids=IDS)
def test_tutorials_box_names_what_the_tutorial_uses(path):
    cells = load(path)
    raw, need = src(cells[1]), needs(cells)
    box = flat(raw)   # a line break counts as a space
    for name in sorted(need['hub']):   # every model the code and its configs load, with its download size
        assert re.search(re.escape(name) + r'`?\s*\(~\s?\d+(?:\.\d+)?\s?GB', box), f'{path.name}: the box does not name {name} with its size (~N GB)'
    if any(n.startswith(GATED) for n in need['hub']):
        assert 'gated' in box and ('hf auth login' in box or 'huggingface-cli login' in box), f'{path.name}: a gated model without the login'
    if need['bitsandbytes']: assert 'pip install bitsandbytes' in box, f'{path.name}: 4/8-bit without bitsandbytes'
    for d in sorted(need['datasets']): assert DATASETS[d][0] in box, f'{path.name}: the box does not name {DATASETS[d][0]}'
    named = [d for d in DATASETS.values() if d[0] in box]
    for name, licence, page in named: assert licence in box and page in box, f'{path.name}: {name} without its licence or page'
    assert named or 'No dataset' in box, f"{path.name}: name a dataset with its licence, or say 'No dataset'"
    assert 'download.pytorch.org/whl/cu' in box, f'{path.name}: no CUDA build of torch'
    tm = flat(bullet(raw, 'Time and memory'))
    assert 'estimate, not measured' in tm and TIME.search(tm) and MEMORY.search(tm), f'{path.name}: no time and memory marked as an estimate: {tm!r}'
    assert 'CPU' in bullet(raw, 'Without any of it'), f'{path.name}: the box does not say what runs on a CPU'


def test_tutorials_rule_finds_the_models_the_code_and_configs_use():
    "The derivation is not vacuous: names in code, outputs, shell blocks, configs and implied by `spamo extract`."
    got = {p.stem: needs(load(p)) for p in TUTORIALS}
    assert {'google/flan-t5-xl', 'facebook/nllb-200-distilled-600M', *EXTRACTION} <= got['reproduce_table1']['hub']
    assert {'meta-llama/Llama-3.1-8B-Instruct', 'Qwen/Qwen2.5-1.5B-Instruct'} <= got['decoder_only_llms']['hub']
    assert got['decoder_only_llms']['bitsandbytes'] and not got['reproduce_table1']['bitsandbytes']
    assert set(EXTRACTION) <= got['translate_your_videos']['hub'] and got['many_gpus']['datasets'] == {'phoenix14t'}
    cells = [dict(cell_type='code', source=["x = 'data/PHOENIX-2014-T'"], outputs=[]),
             dict(cell_type='markdown', source=['```sh\n', 'spamo train --llm Qwen/Qwen2.5-7B\n', '```'])]
    assert needs(cells) == dict(hub={'Qwen/Qwen2.5-7B'}, datasets=set(), bitsandbytes=False)


FIXTURE_MODULES = ('spamo.testing', 'spamo.demo', 'spamo.synth')   # tiny models, SynthSign, toy clips


def _is_test(n) -> bool:
    return isinstance(n, ast.Assert) or (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id.startswith('test_'))


def _walk(node):
    "ast.walk that does not enter tests and asserts: what only a check uses does not make a shown value."
    todo = [node]
    while todo:
        n = todo.pop()
        if _is_test(n): continue
        yield n
        todo.extend(ast.iter_child_nodes(n))


def smoke_cells(cells) -> list[int]:
    "Indices of the code cells with outputs that come from the smoke fixtures (a taint of names through assignments and calls)."
    tainted, out = set(), []
    for i, c in enumerate(cells):
        if c['cell_type'] != 'code': continue
        try: tree = ast.parse(src(c))
        except SyntaxError: continue
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and n.module in FIXTURE_MODULES: tainted |= {a.asname or a.name for a in n.names}
        smoke = False
        for stmt in tree.body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)): continue
            nodes = list(_walk(stmt))
            if any((isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in tainted) or
                   (isinstance(n, ast.Constant) and n.value == 'tiny') for n in nodes):
                smoke = True
                tainted |= {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
                tainted |= {a.id for n in nodes if isinstance(n, ast.Call) for a in [*n.args, *(k.value for k in n.keywords)]
                            if isinstance(a, ast.Name)}   # a path handed to a smoke job holds what it wrote (a run dir)
        if smoke and c.get('outputs'): out.append(i)
    return out


def unlabelled(cells) -> list[str]:
    "Problems: smoke outputs whose nearest markdown cell above is not a smoke callout, and smoke callouts above no smoke output."
    smoke, problems = set(smoke_cells(cells)), []
    for i in sorted(smoke):
        j = max(k for k in range(i) if cells[k]['cell_type'] == 'markdown')
        if not is_smoke_callout(cells[j]): problems.append(f"cell {i} ({cells[i].get('id')}) shows smoke output without a smoke callout above it")
    for j, c in enumerate(cells):
        if not is_smoke_callout(c): continue
        nxt = next((k for k in range(j + 1, len(cells)) if cells[k]['cell_type'] == 'markdown'), len(cells))
        if not smoke & set(range(j + 1, nxt)): problems.append(f"smoke callout {c.get('id')} labels no smoke output")
    return problems


@pytest.mark.parametrize('path', TUTORIALS, ids=IDS)
def test_tutorials_smoke_outputs_are_labelled_smoke(path):
    assert not unlabelled(load(path)), f'{path.name}: ' + '; '.join(unlabelled(load(path)))


def test_tutorials_smoke_rule_tells_smoke_from_full_scale():
    found = {p.stem: len(smoke_cells(load(p))) for p in TUTORIALS}
    assert found['reproduce_table1'] == 0, found   # full-scale configs, dry runs and meta-device sizes: nothing tiny
    assert all(n > 0 for k, n in found.items() if k != 'reproduce_table1'), found
    code = lambda s, out=True: dict(cell_type='code', id=s[:6], source=[s], outputs=[dict(output_type='stream', text='x')] if out else [])
    md = lambda s: dict(cell_type='markdown', source=[s])
    warn = md(':::{.callout-warning}\n## Smoke size\nTiny.\n:::')
    nb = [md('# T'), code('from spamo.testing import smoke_run', out=False), md('Prose.'),
          code('run = smoke_run()\nlen(str(run))'), code('test_eq(run, run)\n1 + 1'), code("f(spatial='tiny')")]
    assert smoke_cells(nb) == [3, 5]
    assert len(unlabelled(nb)) == 2 and not unlabelled(nb[:3] + [warn] + nb[3:4] + [warn] + nb[4:])
    orphan = unlabelled(nb[:3] + [warn] + nb[3:5] + [warn, md('More.'), warn] + nb[5:])   # a callout with no smoke under it
    assert len(orphan) == 1 and 'labels no smoke output' in orphan[0], orphan
    rd = [code('from spamo.testing import tiny_llm', out=False), code("rd = 'runs/x'", out=False),
          code("train(tiny_llm(), rd)", out=False), code('evaluate(rd)')]   # a run dir a smoke job wrote into
    assert smoke_cells(rd) == [3]
