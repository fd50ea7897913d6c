"""`spamo reproduce`: the table specs, the dry run of every table, a smoke miniature through the real papermill jobs
(CSV, skipping finished rows, a failed row reported), and the job notebooks run from any folder."""
import contextlib, io, json, os, subprocess, sys
from pathlib import Path
import pandas as pd, pytest, yaml
from spamo.presets import resolve_params
from spamo.reproduce import SMOKE, load_table, plan_row, reproduce, reproduce_cli, table_names

REPO = Path(__file__).resolve().parents[1]
slow = pytest.mark.skipif(not os.environ.get('SPAMO_SLOW'), reason='a whole miniature table (minutes on a CPU): set SPAMO_SLOW=1')
ENV = os.environ | {'PYTHONPATH': os.pathsep.join(filter(None, [str(REPO), os.environ.get('PYTHONPATH')]))}


def test_every_paper_table_has_a_spec():
    paper = sorted(['table1', 'table2', 'table3', 'table4', 'table5', 'table7', 'table9', 'table10', 'figure4'])
    assert table_names() == sorted(paper + ['vtalign', 'vtalign-data', 'vtalign-steps'])    # and three investigations, without paper numbers
    assert not any(r.paper for n in ('vtalign', 'vtalign-data') for r in load_table(n).rows)
    t3 = load_table('table3')
    assert [r.paper.get('bleu4') for r in t3.rows] == [21.11, 8.36, 22.26, 24.32]       # the paper's four rows
    assert t3.blind_baseline.train == {'blind': True} and load_table('table4').blind_baseline is None
    assert load_table('table2').rows[0].paper['bleurt'] == 42.23 and load_table('table5').rows[1].paper['kde_entropy'] == 0.12


def test_unknown_keys_are_refused_naming_the_file(tmp_path):
    spec = dict(table='x', title='x', config='configs/phoenix14t.yaml', metrics=['bleu4'], rows=[dict(name='a', train=dict(lr_max=1))])
    (tmp_path / 'x.yaml').write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match=r"x\.yaml: unknown key\(s\) \['lr_max'\]"): load_table(tmp_path / 'x.yaml')


# The paper's run, written out (section 4.1 and appendix A): Flan-T5-XL, LoRA r=16, a 1024-wide adapter, lambda 0.1, one
# in-context example; 4K VT-Align warm-up steps; AdamW at 1e-4 after 10K warm-up steps, cosine to 5e-5; 40 epochs at
# batch 8; beam 5. How2Sign: a 15K-step warm-up. The steps are quoted at the paper's batch of 8 on one GPU, so a config
# holds them as samples (x 8) and the training length as epochs: the same run on any number of GPUs.
PAPER = dict(llm='google/flan-t5-xl', lora=True, lora_r=16, adapter_hidden=1024, mode='both', vt_lambda=0.1, num_examples=1,
             vt_warmup_samples=4000 * 8, lr=1e-4, min_lr=5e-5, lr_warmup_samples=10000 * 8, epochs=40, batch_size=8, grad_accum=1,
             eval_every_epochs=1, num_beams=5, blind=False, max_steps=-1, vt_warmup_steps=-1, lr_warmup_steps=-1, eval_every=-1)
DATASETS = dict(phoenix14t={}, how2sign=dict(vt_warmup_samples=15000 * 8))


@pytest.mark.parametrize('table', table_names())
def test_full_scale_jobs_train_the_papers_schedule(table, tmp_path):
    "Every full-scale row's job resolves, as the notebook resolves it (its own default preset is smoke), to the paper's run plus the row's overrides."
    spec = load_table(table)
    dataset = yaml.safe_load((REPO / spec.config).read_text())['dataset']
    for row in spec.rows + [spec.blind_baseline] * bool(spec.blind_baseline):
        if not row.run: continue
        job = next(j for j in plan_row(spec, row, tmp_path).jobs if j.nb == '06_train.ipynb')
        got = resolve_params(job.params, preset='smoke')
        want = PAPER | DATASETS[dataset] | row.train
        if row.llm: want.pop('llm')                                    # Table 4: the row names its own LLM
        assert {k: got[k] for k in want} == want, (table, row.name)
    if table == 'table3':
        se = next(j for j in plan_row(spec, spec.rows[0], tmp_path).jobs if j.nb == '06_train.ipynb')
        got = resolve_params(se.params, preset='smoke')
        assert (got['mode'], got['vt_lambda'], got['vt_warmup_steps'], got['epochs'], got['batch_size']) == ('spatial', 0.0, 0, 40, 8)


def test_train_overrides_apply_at_full_scale(tmp_path):
    "`--train NAME VALUE` reaches every full-scale row (after the config, before the row's own settings); a bad value is refused by name."
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf): assert reproduce_cli(['table3', '--dry-run', '--out', str(tmp_path), '--train', 'max_steps', '1000']) == 0
    assert buf.getvalue().count('"max_steps": 1000') == 5 and buf.getvalue().count('-p max_steps 1000') == 5
    with contextlib.redirect_stderr(io.StringIO()) as err: assert reproduce_cli(['table3', '--dry-run', '--train', 'max_steps', 'ten']) == 2
    assert "max_steps: 'ten' is not an int" in err.getvalue()


@pytest.mark.parametrize('mode', [[], ['--miniature'], ['--num-processes', '8']], ids=['full', 'miniature', 'multi-gpu'])
def test_dry_run_prints_every_tables_jobs(mode, tmp_path):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf): assert reproduce_cli(['all', '--dry-run', '--out', str(tmp_path), *mode]) == 0
    out = buf.getvalue()
    specs = [load_table(n) for n in table_names()]
    for spec in specs:
        for r in spec.rows + [spec.blind_baseline] * bool(spec.blind_baseline):
            assert f'# {spec.table}: {r.name}' in out, (spec.table, r.name)
    train = 'spamo.cli train' if mode[:1] == ['--num-processes'] else 'papermill ' + str(REPO / 'nbs' / '06_train.ipynb')
    assert out.count(train) == sum(r.run for s in specs for r in s.rows) + sum(bool(s.blind_baseline) for s in specs) == 27 + 16
    assert out.count('07_evaluate.ipynb') == out.count(train)
    assert '08_visual_tokens.ipynb' in out and ('spamo.cli extract' if mode[:1] == ['--num-processes'] else '02a_features.ipynb') in out
    assert not list(tmp_path.iterdir())  # a dry run writes nothing


def test_smoke_miniature_skips_finished_rows_and_reports_failures(tmp_path, monkeypatch):
    "Table 3's ME row at smoke size through papermill; a re-run skips it and adds the blind baseline; a broken row fails alone."
    spec = yaml.safe_load((REPO / 'configs' / 'tables' / 'table3.yaml').read_text())
    assert spec['blind_baseline'] is True
    spec['rows'] = [next(r for r in spec['rows'] if r['name'] == 'ME'), dict(name='broken', train=dict(adapter='no-such-adapter'))]
    spec['reference'] = 'ME'                                           # the table's own reference row is not among these
    (tmp_path / 'mini3.yaml').write_text(yaml.safe_dump(spec))
    monkeypatch.chdir(tmp_path)                                        # from a folder that is not the checkout, --out relative
    args = [str(tmp_path / 'mini3.yaml'), '--smoke', '--out', 'results']
    assert reproduce_cli(args + ['--rows', 'ME', '--no-blind']) == 0                   # one row, no baseline
    csv = tmp_path / 'results' / 'table3-miniature.csv'
    df = pd.read_csv(csv)
    assert list(df.row) == ['ME'] and list(df.status) == ['done'] and 'bleu4_blind' not in df
    assert 0 <= df.bleu4[0] <= 100 and df.bleu4_paper[0] == 8.36
    for c in ['bleu1', 'bleu1_paper', 'bleu4', 'bleu4_paper', 'rouge_l', 'rouge_l_paper', 'protocol', 'signature', 'eval_protocol', 'run_dir']: assert c in df, c
    assert df.protocol[0] == 'slt' and df.signature[0].startswith('nrefs:1|case:mixed') and df.eval_protocol[0] == 'standard'
    run, first, took = tmp_path / 'results' / df.run_dir[0], df.bleu4[0], df.seconds[0]   # run folders are named relative to --out
    for nb in ('train.ipynb', 'evaluate.ipynb'): assert (run / nb).exists(), nb   # the executed copies stay with the run
    assert reproduce_cli(args) == 1                                   # every row and the blind baseline; a failed row: exit status 1
    df = pd.read_csv(csv)
    assert list(df.row) == ['ME', 'broken'] and list(df.status) == ['skipped', 'failed'] and 'no-such-adapter' in df.error[1]
    assert df.bleu4[0] == first and df.seconds[0] == took > 0 and (tmp_path / 'results' / 'table3-miniature.png').stat().st_size > 5000
    blind = tmp_path / 'results' / df.blind_run_dir[0]
    assert blind != run and (blind / 'evaluate.ipynb').exists()
    scores = json.loads((blind / 'eval-test' / 'metrics.json').read_text())
    assert list(df.blind_status) == ['done'] * 2 and list(df.bleu4_blind) == [scores['bleu4']] * 2   # the same floor on every row
    # two seeds: the first is the run above (skipped), the second a run of its own; mean, std and the values in the CSV
    assert reproduce_cli(args + ['--rows', 'ME', '--no-blind', '--seeds', '2']) == 0
    df = pd.read_csv(csv)
    seeds = [float(v) for v in df.bleu4_seeds[0].split(';')]
    assert df.seeds[0] == 2 and df.status[0] == 'done' and seeds[0] == pytest.approx(first, abs=1e-4), df.iloc[0].to_dict()
    assert df.bleu4[0] == pytest.approx(sum(seeds) / 2, abs=1e-3) and df.bleu4_std[0] == pytest.approx(abs(seeds[0] - seeds[1]) / 2 ** 0.5, abs=1e-3)
    assert df.bleu4_low[0] <= df.bleu4_high[0] and df.reference_row[0] == 'ME' and 'bleu4_p' not in df   # the reference gets no p
    runs_dir = tmp_path / 'results' / 'miniature' / 'runs'   # ME's two runs: seed and seed + 1, each in a folder of its own
    me = sorted(json.loads((p / 'config.json').read_text())['train']['seed'] for p in runs_dir.iterdir() if p.is_dir() and p.name.startswith('me-') and (p / 'config.json').exists())
    first_seed = json.loads((run / 'config.json').read_text())['train']['seed']
    assert set(me) == {first_seed, first_seed + 1}, me   # (earlier calls above ran ME under other settings too)


JOBS = {  # job notebook -> papermill parameters of a smoke run (06_train and 07_evaluate: the smoke miniature above runs
          # them through papermill with `--cwd` their run folder, a temporary folder outside the repository)
    '02a_features.ipynb': {}, '08_visual_tokens.ipynb': {'max_points': 200}, '09_demo.ipynb': {'max_steps': 4, 'pretrain_steps': 5},
}

@pytest.mark.parametrize('nb', list(JOBS))
def test_job_notebook_runs_from_any_folder(nb, tmp_path):
    "papermill with `--cwd` a fresh folder: the job finds nothing relative to nbs/ and exports nothing."
    ps = [x for k, v in JOBS[nb].items() for x in ('-p', k, str(v))]
    cwd = tmp_path / 'elsewhere'; cwd.mkdir()
    r = subprocess.run([sys.executable, '-m', 'papermill', str(REPO / 'nbs' / nb), str(tmp_path / 'out.ipynb'), *ps, '--cwd', str(cwd)],
                       capture_output=True, text=True, env=ENV, cwd=cwd)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not (cwd / 'spamo').exists() and not (tmp_path / 'spamo').exists()


@pytest.fixture(scope='module')
def miniature_out(tmp_path_factory):
    "One results folder for every table, so rows that run the same thing run once (SPAMO_MINIATURE_OUT: keep it)."
    return Path(os.environ.get('SPAMO_MINIATURE_OUT') or tmp_path_factory.mktemp('miniature'))

@slow
@pytest.mark.parametrize('table', table_names())
def test_miniature(table, miniature_out):
    "Every table's miniature on SynthSign (SPAMO_SLOW=1): all rows run; Table 3's full model beats motion-only and its blind baseline."
    out = miniature_out
    assert reproduce_cli([table, '--miniature', '--out', str(out)]) == 0
    df = pd.read_csv(out / f'{table}-miniature.csv').set_index('row')
    assert set(df.status) <= {'done', 'skipped', 'paper only'}   # skipped: another table's row ran the same run
    assert set(df.get('blind_status', [])) <= {'done', 'skipped'}
    if table == 'table3':
        assert list(df.index) == ['SE', 'ME', 'SE + ME', 'SE + ME + VT-Align']
        full = df.loc['SE + ME + VT-Align', 'bleu4']
        assert full > df.loc['ME', 'bleu4'] and full > df.loc['SE + ME + VT-Align', 'bleu4_blind'], df[['bleu4', 'bleu4_blind']]


def test_seeds_are_runs_of_their_own(tmp_path):
    "`--seeds 3`: every row (and the blind baseline) trains three times, seed + 0, 1, 2, each in its own run folder; 0 is refused."
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf): assert reproduce_cli(['table3', '--dry-run', '--out', str(tmp_path), '--seeds', '3']) == 0
    out = buf.getvalue()
    assert out.count('06_train.ipynb') == 15 and out.count('(seed +1)') == out.count('(seed +2)') == 5
    assert out.count('-p seed 1 ') + out.count('-p seed 1\n') == 5 and out.count('-p seed 2') == 5
    spec = load_table('table3')
    runs = {plan_row(spec, spec.rows[0], tmp_path, seed=i).run for i in range(3)}
    assert len(runs) == 3 and plan_row(spec, spec.rows[0], tmp_path).run in runs
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit): reproduce_cli(['table3', '--dry-run', '--seeds', '0'])
