"""The README's shell commands, as typed (issue 27 item 1).

Every line of every ```sh block in nbs/index.ipynb (the README's source) is taken in order, in a fresh folder holding a
copy of configs/, nbs/ and the other repository files the lines name (bench/gpu_check.sh):

(a) `test_every_readme_command_parses`: `spamo train` and `spamo reproduce` run with `--dry-run` (the settings resolve);
    the other `spamo` commands go through their own argparse parser, stopped once it has parsed; `papermill` runs with
    `--prepare-only` into the folder its output names (made first), and may not pass an unknown parameter; `accelerate
    launch` goes through accelerate's parser, then its `-m spamo.cli` part as a `spamo` line; `mkdir -p`, `bash ... --help`
    and `hf upload --help` (for an `hf upload ID DIR` line, whose ID must be a hub id) run.
(b) `test_the_readme_runs_at_smoke_size`: the lines a CPU can run do run, and fail the test when they fail as typed.
    What differs from the README, full scale -> smoke size (nothing else does):
    - `data/PHOENIX-2014-T` -> a SynthSign dataset written at that very path (PHOENIX14T layout, `N` videos per split,
      32 px, with mp4 files), so `--root data/PHOENIX-2014-T` stays as typed;
    - the hub encoders of `spamo extract` (CLIP ViT-L/14, VideoMAE-L) -> the tiny random-initialised ones:
      `--spatial tiny --motion tiny` appended (`EXTRA`);
    - the hub models `google/flan-t5-xl` (the config's `llm`) and `facebook/nllb-200-distilled-600M` (the translation
      model) -> a tiny T5 and tokenizer trained here for two steps on the SynthSign training sentences (`SMOKE_NAMES`);
    - `configs/phoenix14t.yaml` -> the same file with `preset: smoke` (6 steps, batch 4, small adapter, fp32) and the
      tiny T5 as `llm`, and `num_examples: 1` (the paper's, so training does need the side file of step 2); its paths
      (`run_dir`, `data_root`, `features`, `translations: ''`) stay as committed;
    - `my_video.mp4` -> a SynthSign test video; shell variables `$RANK`, `$MASTER` -> 0, 127.0.0.1 (parsing only);
    - `# or: CMD` lines are alternatives to the line above them: they run in a second folder `alt/` that shares data/,
      configs/ and nbs/, the training one stopped after 3 of its 6 steps (`--stop-after 3`, as Ctrl-C would); the
      "Stopping and resuming" block runs there too, so `-p resume true` continues that stopped run.
    The tutorials' sh blocks (nbs/tutorials/*.ipynb) run next, in the same folder, after the README's lines: a line
    the README already ran (the same command) is not run twice. Their mapping, on top of the README's:
    - `Qwen/Qwen2.5-1.5B-Instruct` -> a tiny Llama trained here for two steps, its tokenizer given ChatML (Qwen's chat
      template); `configs/phoenix14t-qwen2.5-1.5b.yaml` -> the same file with `preset: smoke`, that tiny model as `llm`,
      `llm_dtype: fp32` (a CPU) and `num_examples: 1`;
    - `my_clip.mp4`, `other_clip.webm`, `clips/*.mp4` -> SynthSign test videos (the webm one encoded in VP9 here);
    - `my-signs/manifest.csv` (the new-sign-language tutorial's own videos) -> the manifest SynthSign writes beside its
      mp4 files (`my-signs` links to `data/PHOENIX-2014-T`), so that tutorial trains on SynthSign as a new language;
    - `google/mt5-xl` -> the tiny T5, as `google/flan-t5-xl`; a tutorial's `spamo train` line without `-f` runs with
      `-p preset smoke` added (6 steps, batch 4, small adapter; the line's own parameters stay as typed);
    - `hf upload ID DIR` (no network here) -> DIR laid out in a Hugging Face cache folder as a download leaves it
      (`spamo.card.hub_cache`), and the commands after it run offline with that cache (`HF_HUB_OFFLINE`, `HF_HUB_CACHE`),
      so `spamo translate ID ...` loads the pushed run through huggingface_hub's real `snapshot_download`.
    Not run in (b), each for the reason `why_not_run` gives: the quick start (`pip install`, `spamo demo`, `nbdev_test`,
    `pytest`: CI runs them), `accelerate launch` (several GPUs), the authors' files (`import-features`,
    `import-checkpoint`, `--from-info` and the run they make), `spamo reproduce` without `--dry-run` (GPUs, or minutes
    for `--miniature`: tests/test_reproduce.py runs it), `accelerate config` (interactive), a 4-bit QLoRA config (CUDA
    and bitsandbytes). (a) still parses them all, except `accelerate config`.
"""
import argparse, contextlib, io, json, os, re, shlex, shutil, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
INDEX = REPO / 'nbs' / 'index.ipynb'
TUTORIALS = sorted((REPO / 'nbs' / 'tutorials').glob('*.ipynb'))
N = dict(train=8, dev=2, test=2)     # SynthSign videos per split
EXTRA = {'extract': ['--spatial', 'tiny', '--motion', 'tiny', '--no-progress'], 'translations': ['--no-progress']}
SMOKE_NAMES = ('google/flan-t5-xl', 'google/mt5-xl', 'facebook/nllb-200-distilled-600M')   # each -> the tiny T5 folder
CAUSAL_NAMES = ('Qwen/Qwen2.5-1.5B-Instruct',)                             # each -> the tiny Llama folder
SHELL_VARS = {'$RANK': '0', '$MASTER_ADDR': '127.0.0.1'}
RESUME_SECTION = 'Stopping and resuming'


def markdown(nb: Path = INDEX) -> str: return '\n\n'.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'markdown')


def fenced(kind: str, nb: Path = INDEX) -> list[tuple[str, str]]:
    "(section heading, body) of every ``` `kind` block of the README (or notebook `nb`), in order."
    out, heading, body = [], '', None
    for line in markdown(nb).splitlines():
        if body is None:
            if m := re.match(r'#{2,4} (.+)', line): heading = m.group(1).strip()
            elif line.strip() == f'```{kind}': body = []
        elif line.strip() == '```': out.append((heading, '\n'.join(body))); body = None
        else: body.append(line)
    return out


def loops(lines: list[str]) -> list[str]:
    "Lines with each `for V in a b c; do ... done` loop unrolled (`$V` and `${V}` replaced), as bash would run them."
    out, i = [], 0
    while i < len(lines):
        m = re.fullmatch(r'for (\w+) in ([^;]+); do', lines[i].strip())
        if not m: out.append(lines[i]); i += 1; continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == 'done')
        out += [re.sub(r'\$\{?' + m.group(1) + r'\b\}?', v, l) for v in m.group(2).split() for l in lines[i + 1:end]]
        i = end + 1
    return out


def commands(nb: Path = INDEX) -> list[dict]:
    "Every command line of the sh blocks of the README (or notebook `nb`): section, text, `&&`-separated argv lists, `# or:` alternative, `> FILE`."
    out = []
    for heading, body in fenced('sh', nb):
        for line in loops(body.replace('\\\n', ' ').splitlines()):
            s, alt = line.strip(), False
            if s.startswith('# or:'): s, alt = s[len('# or:'):].strip(), True
            elif not s or s.startswith('#'): continue
            toks = [SHELL_VARS.get(t, t) for t in shlex.split(s, comments=True)]
            stdout = None
            if len(toks) > 2 and toks[-2] == '>': toks, stdout = toks[:-2], toks[-1]   # `CMD > FILE`: its output, into FILE
            assert not {'|', ';', '||', '>'} & set(toks), f'{s!r}: only `&&` (and a final `> FILE`) in a line this test runs'
            segs, cur = [], []
            for t in toks + ['&&']:
                if t == '&&': segs.append(cur); cur = []
                else: cur.append(t)
            out.append(dict(section=heading, line=s, segs=[g for g in segs if g], alt=alt, stdout=stdout, source=nb.name))
    return out


def why_not_run(argv: list[str]) -> str | None:
    "Why (b) leaves a command out (None: it runs)."
    if argv[0] in ('pip', 'nbdev_test', 'pytest', 'export'): return 'the quick start: CI installs and runs the tests'
    if argv[:2] == ['accelerate', 'config']: return 'interactive: once per machine'
    if argv[0] == 'accelerate': return 'several GPUs (--multi_gpu)'
    if argv[0] == 'papermill' and any(t.startswith('configs/') and 'llm_quant: 4bit' in (REPO / t).read_text() for t in argv if (REPO / t).is_file()):
        return 'CUDA and bitsandbytes (4-bit QLoRA)'
    if argv[0] == 'papermill' and 'configs/phoenix14t-official.yaml' in argv: return "the authors' released files"
    if argv[0] == 'spamo':
        if argv[1] == 'demo': return 'the quick start: CI runs the demo'
        if argv[1] in ('import-features', 'import-checkpoint') or '--from-info' in argv or 'runs/spamo-official' in argv:
            return "the authors' released files"
        if argv[1] == 'reproduce' and '--dry-run' not in argv: return 'GPUs, or minutes for --miniature (tests/test_reproduce.py)'
    return None


def all_commands() -> list[dict]:
    "The README's command lines, then every tutorial's."
    return commands() + [c for nb in TUTORIALS for c in commands(nb)]


def workdir(root: Path) -> Path:
    "A fresh folder holding configs/, nbs/ and every other repository file the README's lines name."
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / 'configs', root / 'configs')
    shutil.copytree(REPO / 'nbs', root / 'nbs', ignore=shutil.ignore_patterns('.ipynb_checkpoints', '_*'))
    for t in {t for c in all_commands() for g in c['segs'] for t in g}:
        if not t.startswith(('configs/', 'nbs/', '-', '/')) and (REPO / t).is_file():
            (root / t).parent.mkdir(parents=True, exist_ok=True); shutil.copy(REPO / t, root / t)
    return root


class _Parsed(Exception): pass

@contextlib.contextmanager
def parse_only():
    "argparse parsers stop (raising `_Parsed`) once they have parsed: a command's arguments are checked, nothing runs."
    orig = argparse.ArgumentParser.parse_args
    def parse(self, args=None, namespace=None): raise _Parsed(self.prog, orig(self, args, namespace))
    argparse.ArgumentParser.parse_args = parse
    try: yield
    finally: argparse.ArgumentParser.parse_args = orig


def spamo(argv: list[str], where: Path, line: str) -> tuple[int, str]:
    "`spamo ARGV` in this process, in folder `where`: exit status and stdout (argparse's refusal fails the test)."
    from spamo.cli import main
    out, err, cwd = io.StringIO(), io.StringIO(), os.getcwd()
    try:
        os.chdir(where)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = main(argv)
    except SystemExit as e: pytest.fail(f'{line!r}: spamo {argv[0]} refused its arguments (exit {e.code}): {err.getvalue()[-800:]}')
    finally: os.chdir(cwd)
    assert rc == 0, f'{line!r} (as `spamo {shlex.join(argv)}`) exited {rc}: {err.getvalue()[-1500:]}'
    return rc, out.getvalue()


def shell(argv: list[str], where: Path, line: str, hub: dict | None = None) -> str:
    "A non-`spamo` command in folder `where` (papermill through this Python); its output, and the test fails on a non-zero exit."
    if argv[0] == 'papermill': argv = [sys.executable, '-m', 'papermill', *argv[1:]]
    env = dict(HF_HUB_OFFLINE='1', HF_HUB_CACHE=str(hub['cache'])) if hub and hub.get('cache') else {}
    r = subprocess.run(argv, cwd=where, capture_output=True, text=True, env=os.environ | dict(OMP_NUM_THREADS='1') | env, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f'{line!r} exited {r.returncode}: {out[-2000:]}'
    assert 'unknown parameter' not in out, f'{line!r}: papermill was given a parameter the job does not have: {out[-800:]}'
    return out


def check_parses(argv: list[str], where: Path, line: str):
    "(a) for one command: its arguments are accepted (and, for train and reproduce, its settings resolve)."
    if argv[0] in ('pip', 'nbdev_test', 'pytest', 'export'): return
    if argv[0] == 'mkdir': shell(argv, where, line); return
    if argv[0] == 'bash':
        assert '--help' in argv, f'{line!r}: a bash line this test can only run with --help'
        assert 'usage' in shell(argv, where, line); return
    if argv[0] == 'papermill':
        (where / argv[2]).parent.mkdir(parents=True, exist_ok=True)   # the run folder its output goes to: made by a training (a) does not run
        shell(argv + ['--prepare-only'], where, line)
        nb = json.loads((where / argv[2]).read_text())
        assert any('injected-parameters' in c['metadata'].get('tags', []) for c in nb['cells']), f'{line!r}: no parameters injected'
        return
    if argv[:2] == ['accelerate', 'config']: return   # interactive: it asks questions, nothing to parse
    if argv[0] == 'hf':   # huggingface_hub's command: it exists, and the line gives the subcommand a hub id
        assert argv[1] in ('upload', 'download') and re.fullmatch(r'[\w.-]+/[\w.-]+', argv[2]), f'{line!r}: no rule for this hf line'
        assert f'Usage: hf {argv[1]}' in shell(['hf', argv[1], '--help'], where, line); return
    if argv[0] == 'accelerate':
        from accelerate.commands.launch import launch_command_parser
        assert argv[1] == 'launch', line
        try: ns = launch_command_parser().parse_args(argv[2:])
        except SystemExit as e: pytest.fail(f'{line!r}: accelerate launch refused its options (exit {e.code})')
        assert ns.module and ns.training_script == 'spamo.cli', f'{line!r}: not `-m spamo.cli`'
        argv = ['spamo', *ns.training_script_args]
    assert argv[0] == 'spamo', f'{line!r}: no rule in tests/test_readme.py for {argv[0]!r}: add one'
    if argv[1] in ('train', 'reproduce'):
        _, out = spamo(argv[1:] + ([] if '--dry-run' in argv else ['--dry-run']), where, line)
        assert out.strip(), f'{line!r}: the dry run printed nothing'
        return
    with parse_only():
        try: rc = spamo(argv[1:], where, line)
        except _Parsed as p: assert p.args[0] == f'spamo {argv[1]}', p.args[0]; return
    pytest.fail(f'{line!r}: spamo {argv[1]} was not parsed ({rc})')


def test_every_readme_and_tutorial_command_parses(tmp_path):
    cmds = all_commands()
    assert {g[1] for c in cmds for g in c['segs'] if g[0] == 'spamo'} >= {'extract', 'translations', 'train', 'evaluate', 'translate', 'reproduce'}
    assert {c['source'] for c in cmds} == {'index.ipynb'} | {p.name for p in TUTORIALS}, 'a tutorial without commands: fine, but say so here'
    where = workdir(tmp_path / 'readme')
    for c in cmds:
        for argv in c['segs']: check_parses(argv, where, c['line'])


def test_readme_links_reach_pages_of_the_site():
    "The README links pages by their address on the site (links relative to nbs/ break on GitHub), each a page nbdev builds."
    import configparser
    cfg = configparser.ConfigParser(); cfg.read(REPO / 'settings.ini')
    site = cfg['DEFAULT']['doc_host'] + cfg['DEFAULT']['doc_baseurl']
    md = re.sub(r'```.*?```', '', markdown(), flags=re.S)
    links = re.findall(r'\]\(([^)\s]+)\)', md) + re.findall(r'<(https?://[^>]+)>', md)
    assert not [l for l in links if not l.startswith(('http://', 'https://', '#'))], 'a relative link: write the site address'
    pages = {re.sub(r'^\d+[a-zA-Z0-9]*_', '', str(p.relative_to(REPO / 'nbs')).lower()).replace('.ipynb', '.html')
             for p in (REPO / 'nbs').rglob('*.ipynb') if not any(s.startswith(('.', '_')) for s in p.relative_to(REPO / 'nbs').parts)}
    ours = [l[len(site):].strip('/') for l in links if l.startswith(site)]
    assert len(ours) >= 7, ours
    for page in ours: assert page == '' or page in pages, f'{site}/{page}: no notebook becomes this page'


def layout() -> set[str]:
    "The files of a run directory as the README's tree in 'The run directory' lists them (folders end in '/')."
    (body,) = [b for h, b in fenced('text') if h == 'The run directory']
    lines = body.splitlines()
    assert lines[0] == 'runs/phoenix14t/', lines[0]
    out, stack = set(), []
    for l in lines[1:]:
        m = re.match(r'((?:[│ ]   )*)[├└]── (\S+)', l)
        assert m, f'not a tree line: {l!r}'
        depth = len(m.group(1)) // 4
        stack[depth:] = [m.group(2)]
        out.add(''.join(stack))
    return out


def smoke_fixtures(root: Path) -> Path:
    "The smoke stand-ins of the README's inputs, in `root` (see the mapping above); returns the tiny T5's folder."
    from spamo.data import load_dataset
    from spamo.synth import make_synthsign
    from spamo.tiny import prepare_tiny_llm
    data = make_synthsign(root / 'data' / 'PHOENIX-2014-T', N['train'], N['dev'], N['test'], size=32, mp4=True, workers=1)
    shutil.copy(sorted((data / 'videos' / 'test').glob('*.mp4'))[0], root / 'my_video.mp4')
    llm = prepare_tiny_llm([s.text for s in load_dataset('phoenix14t', data, 'train')], root / 'tiny-t5', steps=2)
    y = root / 'configs' / 'phoenix14t.yaml'; text = y.read_text()
    assert re.search(r'^preset: phoenix14t\b', text, re.M) and re.search(r'^llm: google/flan-t5-xl\b', text, re.M), 'the mapping no longer fits the config'
    text = re.sub(r'^preset: \S+', 'preset: smoke', text, flags=re.M)
    y.write_text(re.sub(r'^llm: \S+', f'llm: {llm}', text, flags=re.M) + '\nnum_examples: 1\n')
    alt = root / 'alt'; alt.mkdir()
    for d in ('data', 'configs', 'nbs'): (alt / d).symlink_to(root / d)
    (root / 'my-signs').symlink_to(data)   # the new-sign-language tutorial's videos: SynthSign's own manifest.csv and mp4 files
    return llm


def tutorial_fixtures(root: Path, sentences: list[str]) -> Path:
    "The tutorials' smoke stand-ins (see the mapping above), in `root`; returns the tiny Llama's folder."
    from transformers import AutoTokenizer
    from spamo.testing import write_video
    from spamo.tiny import CHATML, prepare_tiny_llm
    from spamo.video import read_video
    tests = sorted((root / 'data' / 'PHOENIX-2014-T' / 'videos' / 'test').glob('*.mp4'))
    shutil.copy(tests[0], root / 'my_clip.mp4')
    write_video(root / "other_clip.webm", read_video(tests[1])[0], codec="libvpx-vp9")
    (root / 'clips').mkdir()
    for v in tests: shutil.copy(v, root / 'clips' / v.name)
    llm = prepare_tiny_llm(sentences, root / 'tiny-llama', steps=2, family='causal')
    tok = AutoTokenizer.from_pretrained(llm); tok.chat_template = CHATML; tok.save_pretrained(llm)
    y = root / 'configs' / 'phoenix14t-qwen2.5-1.5b.yaml'; text = y.read_text()
    assert all(re.search(rf'^{k}: {v}\b', text, re.M) for k, v in (('preset', 'phoenix14t'), ('llm', CAUSAL_NAMES[0]), ('llm_dtype', 'bf16'))), 'the mapping no longer fits'
    for k, v in (('preset', 'smoke'), ('llm', str(llm)), ('llm_dtype', 'fp32')): text = re.sub(rf'^{k}: \S+', f'{k}: {v}', text, flags=re.M)
    y.write_text(text + '\nnum_examples: 1\n')
    return llm


def last_json(out: str) -> dict:
    "The last JSON object a command printed (its summary)."
    return json.loads(out[out.rindex('\n{') + 1:] if '\n{' in out else out[out.index('{'):])


def run_line(c: dict, argv: list[str], where: Path, names: dict, hub: dict) -> tuple[list[str], str]:
    "One command of a line at smoke size in folder `where`: the mapped argv and what it printed (into `> FILE` too); `hub` holds the cache an `hf upload` filled."
    from spamo.card import hub_cache
    argv = [names.get(t, t) for t in argv]
    argv = [m for t in argv for m in (sorted(str(p.relative_to(where)) for p in where.glob(t)) if '*' in t else [t])]   # as bash globs
    if argv[:2] == ['hf', 'upload']:   # the push, without a network: the cache a download would fill
        hub['cache'] = where / 'hf-cache'; out = str(hub_cache(where / argv[3], argv[2], hub['cache']))
    elif argv[0] != 'spamo': out = shell(argv, where, c['line'], hub)
    else:
        tutorial_train = c['source'] != 'index.ipynb' and argv[1] == 'train' and '-f' not in argv
        argv = (argv + EXTRA.get(argv[1], []) + (['--stop-after', '3'] if c['alt'] and argv[1] == 'train' else [])
                + (['-p', 'preset', 'smoke'] if tutorial_train else []))
        with offline(hub): out = spamo(argv[1:], where, c['line'])[1]
    if c['stdout']: (where / c['stdout']).write_text(out)
    return argv, out


@contextlib.contextmanager
def offline(hub: dict):
    "huggingface_hub offline with the cache an `hf upload` line filled (as HF_HUB_OFFLINE=1 HF_HUB_CACHE=... do, read at its import)."
    if not hub.get('cache'): yield; return
    import huggingface_hub.constants as constants
    from unittest import mock
    with mock.patch.object(constants, 'HF_HUB_OFFLINE', True), mock.patch.object(constants, 'HF_HUB_CACHE', str(hub['cache'])): yield


def test_the_readme_and_tutorials_run_at_smoke_size(tmp_path):
    from spamo.data import load_dataset
    root = workdir(tmp_path / 'readme')
    llm = smoke_fixtures(root)
    causal = tutorial_fixtures(root, [s.text for s in load_dataset('phoenix14t', root / 'data' / 'PHOENIX-2014-T', 'train')])
    names = {n: str(llm) for n in SMOKE_NAMES} | {n: str(causal) for n in CAUSAL_NAMES}
    ran, skipped, done, hub = [], [], set(), {}
    for c in all_commands():
        where = root / 'alt' if c['alt'] or c['section'] == RESUME_SECTION else root
        for argv in c['segs']:
            if why := why_not_run(argv): skipped.append((c['line'], why)); continue
            if c['source'] != 'index.ipynb' and (where.name, tuple(argv)) in done: continue   # the README ran this very command
            done.add((where.name, tuple(argv)))
            ran.append((where.name, *run_line(c, argv, where, names, hub), c['source']))
    ran, tut = [r[:3] for r in ran if r[3] == 'index.ipynb'], [r[:3] for r in ran if r[3] != 'index.ipynb']
    by = lambda sub, folder='readme': [(a, o) for w, a, o in ran if w == folder and a[0] == 'spamo' and a[1] == sub]

    # 1. every split extracted once into the one store; re-running it (in alt/, same store) skips every video
    firsts = [last_json(o) for a, o in by('extract')]
    assert [(r['extracted'], r['skipped']) for r in firsts] == [(N['train'], 0), (N['dev'], 0), (N['test'], 0)], firsts
    assert len(list((root / 'data/features/phoenix14t/records').glob('*.safetensors'))) == sum(N.values())
    (again,) = [last_json(o) for a, o in by('extract', 'alt')]
    assert (again['extracted'], again['skipped']) == (0, N['train']), again
    # 2. the side file holds the three languages of every training sentence, and the run was trained with it
    from spamo.prompt import load_translations
    side = load_translations(root / 'data' / 'phoenix14t-translations.jsonl')
    assert len(side) == N['train'] and all(set(v) == {'en', 'es', 'fr'} for v in side.values()), side
    run = root / 'runs' / 'phoenix14t'
    cfg = json.loads((run / 'config.json').read_text())
    assert cfg['model']['num_examples'] == 1 and Path(cfg['data']['translations']).name == 'phoenix14t-translations.jsonl', cfg
    # 3. the papermill job trained the smoke schedule; the run directory is what the README's tree says, no more, no less
    assert json.loads((run / 'summary.json').read_text())['steps'] == 6
    found = {str(p.relative_to(run)) + ('/' if p.is_dir() else '') for p in run.rglob('*')}
    assert found == layout(), f'README tree vs the run: missing {layout() - found}, unlisted {found - layout()}'
    # 4. the evaluation job translated the test split; `spamo evaluate` scored it
    preds = pd.read_csv(run / 'eval-test' / 'predictions.tsv', sep='\t')
    assert list(preds.columns) == ['id', 'hypothesis', 'reference'] and len(preds) == N['test']
    assert json.loads((run / 'eval-test' / 'metrics.json').read_text())['n'] == N['test']
    (ev,) = by('evaluate')
    assert 'BLEU4' in ev[1] and f'(n={N["test"]})' in ev[1], ev[1]
    # 5. a sentence for the new video
    (tr,) = by('translate')
    lines = tr[1].splitlines()
    assert lines[0] == 'my_video.mp4' and lines[1].strip(), tr[1]
    # the alternative `spamo train`, stopped after 3 steps in alt/, and the README's resume line finishing it
    alt_run = root / 'alt' / 'runs' / 'phoenix14t'
    stopped, resumed = [last_json(o) for a, o in by('train', 'alt')]
    assert (stopped['steps'], resumed['steps']) == (3, 6), (stopped, resumed)
    assert pd.read_csv(alt_run / 'log.csv').step.tolist() == [1, 2, 3, 4, 5, 6]
    # the lines left out are the ones the mapping names
    assert {w for _, w in skipped} <= {'the quick start: CI installs and runs the tests', 'the quick start: CI runs the demo',
                                       'several GPUs (--multi_gpu)', "the authors' released files",
                                       'GPUs, or minutes for --miniature (tests/test_reproduce.py)',
                                       'interactive: once per machine', 'CUDA and bitsandbytes (4-bit QLoRA)'}
    assert any(a[:3] == ['spamo', 'reproduce', 'table3'] and 'papermill' in o for _, a, o in ran)

    # the tutorials: the decoder-only job; a new sign language from its manifest to its card and its hub id; videos translated
    assert [a[1] if a[0] == 'papermill' else a[:2] for _, a, _ in tut if a[0] != 'mkdir'] == [
        'nbs/06_train.ipynb', *[['spamo', 'extract']] * 3, ['spamo', 'translations'], ['spamo', 'train'], 'nbs/07_evaluate.ipynb',
        ['spamo', 'evaluate'], ['spamo', 'card'], ['hf', 'upload'], ['spamo', 'translate'], ['spamo', 'translate'], ['spamo', 'translate']], [a for _, a, _ in tut]
    check_new_sign_language(root, [t for t in tut if t[1][:2] in (['spamo', 'extract'], ['spamo', 'translate'])])
    causal_run = root / 'runs' / 'phoenix14t-qwen2.5-1.5b'     # the executed notebook sits in the run it trained
    assert (causal_run / 'train.ipynb').is_file() and (causal_run / 'checkpoints').is_dir()
    cfg = json.loads((causal_run / 'config.json').read_text())
    assert (cfg['model']['llm_family'], cfg['model']['chat_template'], cfg['model']['num_examples']) == ('causal', True, 1), cfg['model']
    assert json.loads((causal_run / 'summary.json').read_text())['steps'] == 6
    two, many = tut[-2][2].splitlines(), json.loads((root / 'translations.json').read_text())
    assert (two[0], two[3]) == ('my_clip.mp4', 'other_clip.webm') and two[1].strip() and two[4].strip(), two
    assert len(many) == N['test'] and all(r['text'].strip() and r['error'] is None for r in many), many


def check_new_sign_language(root: Path, ran: list):
    "The new-sign-language tutorial's lines did their work: a manifest run with examples, its card, the pushed folder, a sentence by hub id."
    import yaml
    extracted = [last_json(o) for _, a, o in ran if a[1] == 'extract']
    assert [(r['extracted'], r['skipped']) for r in extracted] == [(N['train'], 0), (N['dev'], 0), (N['test'], 0)], extracted
    run = root / 'runs' / 'my-signs'
    cfg = json.loads((run / 'config.json').read_text())
    assert (cfg['data']['dataset'], cfg['model']['num_examples'], json.loads((run / 'summary.json').read_text())['steps']) == ('manifest', 1, 6)
    front = yaml.safe_load((run / 'README.md').read_text().split('---\n')[1])
    scored = json.loads((run / 'eval-test' / 'metrics.json').read_text())
    assert front['language'] == ['de'] and front['model-index'][0]['results'][0]['metrics'][0]['value'] == round(scored['bleu4'], 2)
    up = root / 'upload' / 'my-signs'
    assert sorted(p.name for p in up.iterdir()) == ['README.md', 'config.json', 'features.json', 'llm', 'prompt.json', 'trainable.safetensors']
    assert len(json.loads((up / 'prompt.json').read_text())['examples']) == N['train']   # the side file covers every training sentence
    assert (root / 'hf-cache' / 'models--your-name--spamo-my-signs' / 'refs' / 'main').is_file()
    (_, argv, out), = [t for t in ran if t[1][:3] == ['spamo', 'translate', 'your-name/spamo-my-signs']]
    lines = out.splitlines()
    assert lines[0] == 'my_clip.mp4' and lines[1].strip(), out
