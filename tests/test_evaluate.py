"""spamo.evaluate: published scores reproduced, Unicode ROUGE-L, the CLI's errors, corpus BLEU over gathered shards."""
import json, math, os, shutil, subprocess, sys, textwrap
from pathlib import Path
import pytest
from spamo.metrics import (evaluate_predictions, gather_predictions, dedup_sort, corpus_bleu, corpus_rouge_l, rouge_l, rouge_tokens,
                           settings_for, worst_best)
from spamo.evaluate import evaluate_cli, read_scores_txt, PUBLISHED

REPO = Path(__file__).resolve().parents[1]

# Cross-check, copied from shared/data/SOURCES.md section 4a (the test parses scores.txt as well and compares to both).
SOURCES_TABLE = {  # (dataset, system) -> (BLEU-4 scores.txt, ROUGE-L scores.txt or None, BLEU-4 tokenize=zh or None)
    ('Phoenix', 'GFSLT'): (22.23, 47.53, None), ('Phoenix', 'GFSLT-CiCO'): (23.55, 48.55, None),
    ('Phoenix', 'SignCL'): (22.69, 47.19, None), ('Phoenix', 'FlaLLM'): (20.10, 44.22, None),
    ('Phoenix', 'C2RL'): (21.95, 47.77, None),
    ('CSL-Daily', 'GFSLT'): (10.60, None, 11.93), ('CSL-Daily', 'GFSLT-CiCO'): (12.10, None, 13.42),
    ('CSL-Daily', 'SignCL'): (11.48, None, 12.74), ('CSL-Daily', 'Fla-LLM'): (10.56, None, 11.79),
    ('CSL-Daily', 'C2RL'): (11.74, None, 12.90),
}
CLI_ARGS = {'Phoenix': ['--language', 'de'],  # defaults: 13a, case kept, final " ." kept, ROUGE words, beta 1.2
            'CSL-Daily': ['--language', 'zh', '--tokenize', 'none', '--rouge-tokens', 'coco']}

def _cli_json(capsys, argv):
    capsys.readouterr()
    assert evaluate_cli([*argv, '--json']) == 0
    return json.loads(capsys.readouterr().out)

@pytest.mark.parametrize('ds,system', list(SOURCES_TABLE))
def test_reproduces_published_scores(shared_data, capsys, ds, system):
    d = shared_data / PUBLISHED / ds / system
    pub = read_scores_txt(d / 'scores.txt')
    files = [str(d / 'tmp_pres.txt'), str(d / 'tmp_refs.txt')]
    m = _cli_json(capsys, files + CLI_ARGS[ds])
    b4, rl, zh = SOURCES_TABLE[ds, system]
    for n in range(1, 5):  # cumulative BLEU-n = pycocoevalcap Bleu_n
        assert abs(m[f'bleu{n}'] - 100 * pub[f'Bleu_{n}']) < 0.01, (n, m[f'bleu{n}'], pub)
    assert abs(m['bleu4'] - b4) < 0.006 and abs(100 * pub['Bleu_4'] - b4) < 0.006
    assert abs(m['rouge_l'] - 100 * pub['ROUGE_L']) < 0.01, (m['rouge_l'], pub['ROUGE_L'])
    if rl is not None: assert abs(m['rouge_l'] - rl) < 0.006
    assert m['signature'].startswith(f"nrefs:1|case:mixed|eff:no|tok:{'13a' if ds == 'Phoenix' else 'none'}|smooth:exp|version:")
    if ds == 'CSL-Daily':  # sacreBLEU's Chinese tokenizer: the language defaults
        mz = _cli_json(capsys, files + ['--language', 'zh'])
        assert 'tok:zh' in mz['signature'] and abs(mz['bleu4'] - zh) < 0.006, mz['bleu4']
        lib = d / 'sacrebleu_library_scores.txt'
        if lib.exists():
            lib = read_scores_txt(lib)
            for n in range(1, 5): assert abs(mz[f'bleu{n}'] - lib[f'sacre_bleu{n}']) < 0.01, (n, mz, lib)
        # the language defaults score ROUGE-L by characters: not the published number (which split on spaces)
        assert abs(mz['rouge_l'] - 100 * pub['ROUGE_L']) > 0.5

def test_rouge_l_hand_checked():
    # für die nächsten tage (4) vs für die tage (3): LCS 3, P 3/4, R 1; F(1.2) = 2.44*.75/(1+1.44*.75) = 1.83/2.08
    h, r = rouge_tokens('für die nächsten tage'), rouge_tokens('für die tage')
    assert h == ['für', 'die', 'nächsten', 'tage']
    assert math.isclose(rouge_l(h, r), 1.83 / 2.08) and math.isclose(rouge_l(h, r, beta=1.0), 1.5 / 1.75)
    # ASCII-only: f r die n chsten tage vs f r die tage -> LCS 4, P 4/6, R 1, F(1.2) = 0.8299: not ours
    import re
    a = lambda t: re.findall('[a-z0-9]+', t)
    assert abs(rouge_l(h, r) - rouge_l(a('für die nächsten tage'), a('für die tage'))) > 0.04
    # Straße / ß is one letter of a word, not a separator
    assert rouge_tokens('die straße ist glatt') == ['die', 'straße', 'ist', 'glatt']
    # 我想吃米饭 (5) vs 今天我想吃面条 (7): LCS 3 (我想吃), P 3/5, R 3/7; F(1.2) = 2.44*.6*(3/7)/(3/7+1.44*.6) = 0.48541
    zh = settings_for('zh')
    got = corpus_rouge_l(['我想吃米饭'], ['今天我想吃面条'], zh)
    assert math.isclose(got, 100 * 2.44 * .6 * (3 / 7) / (3 / 7 + 1.44 * .6)) and abs(got - 48.541) < 1e-3
    assert rouge_l(a('我想吃米饭'), a('今天我想吃面条')) == 0.0
    # character-spaced and unspaced Chinese score the same with the zh defaults
    assert corpus_rouge_l(['我 想 吃 米 饭'], ['今 天 我 想 吃 面 条'], zh) == got

def test_cli_line_count_mismatch(tmp_path, capsys):
    h, r = tmp_path / 'hyps.txt', tmp_path / 'refs.txt'
    h.write_text('a b c\nd e f\ng h\n', encoding='utf-8'); r.write_text('a b c\nd e f\n', encoding='utf-8')
    assert evaluate_cli([str(h), str(r)]) != 0
    err = capsys.readouterr().err
    assert str(h) in err and str(r) in err and '3 lines' in err and '2 lines' in err, err

def test_cli_missing_file(tmp_path, capsys):
    r = tmp_path / 'refs.txt'; r.write_text('a\n', encoding='utf-8')
    assert evaluate_cli([str(tmp_path / 'nope.txt'), str(r)]) != 0
    assert 'nope.txt' in capsys.readouterr().err

def test_cli_writes_run_dir_and_options(tmp_path, capsys):
    h, r = tmp_path / 'h.txt', tmp_path / 'r.txt'
    h.write_text('Am Tag Regen .\nfür die nächsten tage .\n', encoding='utf-8'); r.write_text('am tag regen\nfür die tage\n', encoding='utf-8')
    plain = _cli_json(capsys, [str(h), str(r)])
    m = _cli_json(capsys, [str(h), str(r), '--lowercase', '--punct', 'final', '--out', str(tmp_path / 'run')])
    assert m['bleu1'] > plain['bleu1'] and 'case:lc' in m['signature'] and m['settings']['punct'] == 'final'
    assert json.loads((tmp_path / 'run' / 'metrics.json').read_text(encoding='utf-8')) == m
    assert (tmp_path / 'run' / 'predictions.tsv').read_text(encoding='utf-8').splitlines()[0] == 'id\thypothesis\treference'

# Two shards: one long sentence translated perfectly, one short one badly (padded with a duplicate of 'b').
SHARDS = [(['a', 'c'], ['der wind weht heute im ganzen land aus nordwest', 'es bleibt trocken'],
           ['der wind weht heute im ganzen land aus nordwest', 'es bleibt heute trocken']),
          (['b', 'b'], ['morgen regen'] * 2, ['morgen sonne im süden'] * 2)]

def _bleu4(h, r): return corpus_bleu(h, r, settings_for('de'))[0]['bleu4']

def test_union_bleu_is_not_mean_of_shards():
    per_shard = [_bleu4(h, r) for _, h, r in SHARDS]
    ids, hyps, refs = dedup_sort(*(sum((list(s[k]) for s in SHARDS), []) for k in range(3)))  # what gathering concatenates
    assert ids == ['a', 'b', 'c']
    union = _bleu4(hyps, refs)
    assert abs(union - sum(per_shard) / 2) > 10, (union, per_shard)
    single = gather_predictions(*SHARDS[1])  # one process: de-duplicated, nothing else
    assert single == (['b'], ['morgen regen'], ['morgen sonne im süden'])
    m1 = evaluate_predictions(ids, hyps, refs, 'de', verbose=False)
    m2 = evaluate_predictions(ids, hyps, refs, 'de', verbose=False)
    assert m1 == m2 and m1['bleu4'] == union  # deterministic, and the gathered lists give the union score

GATHER_SCRIPT = textwrap.dedent('''
    import json, sys
    from accelerate import Accelerator
    from spamo.metrics import gather_predictions, corpus_bleu, settings_for
    sys.path.insert(0, sys.argv[2]); from test_evaluate import SHARDS
    acc = Accelerator(cpu=True)
    ids, hyps, refs = SHARDS[acc.process_index]
    g = gather_predictions(ids, hyps, refs, acc)      # accelerate gather_object
    g2 = gather_predictions(ids, hyps, refs)          # torch.distributed all_gather_object
    json.dump(dict(n=acc.num_processes, g=g, g2=g2, bleu4=corpus_bleu(g[1], g[2], settings_for('de'))[0]['bleu4']),
              open(f'{sys.argv[1]}/rank{acc.process_index}.json', 'w'))
    acc.end_training()   # closes the process group, as torch asks before exit
''')

@pytest.mark.skipif(shutil.which('torchrun') is None, reason='torchrun not found')
def test_gather_two_processes(tmp_path):
    "torchrun --nproc_per_node 2 (gloo on CPU): every process gets the union and scores it once."
    script = tmp_path / 'gather.py'; script.write_text(GATHER_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]), OMP_NUM_THREADS='1')
    p = subprocess.run(['torchrun', '--standalone', '--nproc_per_node', '2', str(script), str(tmp_path), str(Path(__file__).parent)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    ids, hyps, refs = dedup_sort(*(sum((list(s[k]) for s in SHARDS), []) for k in range(3)))
    for rank in (0, 1):
        out = json.loads((tmp_path / f'rank{rank}.json').read_text())
        assert out['n'] == 2 and out['g'] == out['g2'] == [ids, hyps, refs]
        assert out['bleu4'] == _bleu4(hyps, refs)

def test_worst_best_table():
    ids, hyps, refs = ['x', 'y', 'z'], ['ein satz', 'ganz anders', 'der satz hier'], ['ein satz', 'ein satz', 'der satz dort']
    t = worst_best(ids, hyps, refs, 'de', k=1)
    assert list(t.columns) == ['group', 'rank', 'id', 'sentence_bleu', 'hypothesis', 'reference']
    assert t.id.tolist() == ['y', 'x'] and t.sentence_bleu.tolist()[1] == pytest.approx(100)


# --- Scoring protocols -------------------------------------------------------------------------------------------
# spamo-official on the published files, measured with spamo.metrics and checked against rouge_score 0.1.2 (equal to
# the last digit); kept here so the check runs where rouge_score is not installed.
OFFICIAL = {  # (dataset, system) -> (BLEU-4, ROUGE-L F1 as rouge_score computes it)
    ('Phoenix', 'C2RL'): (21.953717235567836, 43.82207815033376), ('Phoenix', 'FlaLLM'): (20.096972493003964, 40.09853568869798),
    ('Phoenix', 'GFSLT'): (22.230343650748065, 43.612450751159166), ('Phoenix', 'GFSLT-CiCO'): (23.550707575625697, 44.82078304851307),
    ('Phoenix', 'SignCL'): (22.685110406088747, 43.38074851699126),
    ('CSL-Daily', 'C2RL'): (12.896560277947557, 0.0), ('CSL-Daily', 'Fla-LLM'): (11.787667455967165, 0.0),
    ('CSL-Daily', 'GFSLT'): (11.933089860034315, 0.0), ('CSL-Daily', 'GFSLT-CiCO'): (13.421944883056932, 0.0),
    ('CSL-Daily', 'SignCL'): (12.737797406324013, 0.0),
}
LANG = {'Phoenix': 'de', 'CSL-Daily': 'zh'}


def authors_scoring(preds, refs, phoenix):
    "A direct transcription of the SpaMo authors' scoring (dataset/p14t.py, spamo/t5_slt.py, utils/evaluate.py)."
    from sacrebleu.metrics import BLEU
    if phoenix: refs = [r.strip() if r.strip().endswith('.') else f'{r.strip()}.' for r in refs]  # _normalize_text
    preds, refs = [p.lower() for p in preds], [r.lower() for r in refs]                        # t5_slt: .lower() both
    out = {f'bleu{i}': BLEU(max_ngram_order=i, tokenize='13a').corpus_score(preds, [refs]).score for i in range(1, 5)}
    try: from rouge_score import rouge_scorer
    except ImportError: return out
    scorer = rouge_scorer.RougeScorer(['rougeL'], use_stemmer=True)
    scores = [scorer.score(ref, pred)['rougeL'] for ref, pred in zip(refs, preds)]
    return dict(out, rouge_l=100 * sum(s.fmeasure for s in scores) / len(scores))


@pytest.mark.parametrize('ds,system', list(SOURCES_TABLE))
def test_protocol_slt_reproduces_published(shared_data, capsys, ds, system):
    d = shared_data / PUBLISHED / ds / system
    pub = read_scores_txt(d / 'scores.txt')
    m = _cli_json(capsys, [str(d / 'tmp_pres.txt'), str(d / 'tmp_refs.txt'), '--protocol', 'slt'] + CLI_ARGS[ds])
    assert m['protocol'] == 'slt' and m['settings']['protocol'] == 'slt'
    close = lambda a, b: math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-11)  # float noise of pycocoevalcap's own arithmetic
    for n in range(1, 5): assert close(m[f'bleu{n}'], 100 * pub[f'Bleu_{n}']), (n, m[f'bleu{n}'], pub)
    assert close(m['rouge_l'], 100 * pub['ROUGE_L']), (m['rouge_l'], pub['ROUGE_L'])
    assert m == _cli_json(capsys, [str(d / 'tmp_pres.txt'), str(d / 'tmp_refs.txt')] + CLI_ARGS[ds])  # slt is the default


@pytest.mark.parametrize('ds,system', list(SOURCES_TABLE))
def test_protocol_spamo_official_is_the_authors_scoring(shared_data, capsys, ds, system):
    d = shared_data / PUBLISHED / ds / system
    hyps, refs = (d / 'tmp_pres.txt').read_text(encoding='utf-8').splitlines(), (d / 'tmp_refs.txt').read_text(encoding='utf-8').splitlines()
    m = _cli_json(capsys, [str(d / 'tmp_pres.txt'), str(d / 'tmp_refs.txt'), '--protocol', 'spamo-official', '--language', LANG[ds]])
    assert m['protocol'] == 'spamo-official' and m['settings']['ref_period'] == (ds == 'Phoenix')
    want = authors_scoring(hyps, refs, ds == 'Phoenix')
    for n in range(1, 5): assert abs(m[f'bleu{n}'] - want[f'bleu{n}']) < 1e-9, (n, m[f'bleu{n}'], want)
    if 'rouge_l' in want: assert abs(m['rouge_l'] - want['rouge_l']) < 1e-9, (m['rouge_l'], want['rouge_l'])
    assert m['rouge_l'] == m['rouge_l_f1']  # F1: beta 1
    b4, rl = OFFICIAL[ds, system]
    assert abs(m['bleu4'] - b4) < 1e-9 and abs(m['rouge_l'] - rl) < 1e-9, (m['bleu4'], m['rouge_l'])
    if ds == 'Phoenix':  # ROUGE-L of rouge_score (stemmed [a-z0-9] tokens, F1) is not the published pycocoevalcap one
        assert abs(m['rouge_l'] - 100 * read_scores_txt(d / 'scores.txt')['ROUGE_L']) > 3


def test_authors_reference_period_and_lowercase(tmp_path, capsys):
    "References without the final '.' get it under spamo-official (as the authors' PHOENIX14T targets), and both sides are lowercased."
    h, r = tmp_path / 'h.txt', tmp_path / 'r.txt'
    h.write_text('Am Tag Regen im Norden .\nmorgen sonne im süden .\n', encoding='utf-8')
    r.write_text('am tag regen im norden\nmorgen sonne im osten\n', encoding='utf-8')
    slt, off = _cli_json(capsys, [str(h), str(r)]), _cli_json(capsys, [str(h), str(r), '--protocol', 'spamo-official'])
    want = authors_scoring(read_lines_(h), read_lines_(r), True)
    assert off['bleu4'] > slt['bleu4'] + 5 and abs(off['bleu4'] - want['bleu4']) < 1e-9, (slt['bleu4'], off['bleu4'], want)
    assert 'case:lc' in off['signature'] and 'case:mixed' in slt['signature']


def read_lines_(p): return Path(p).read_text(encoding='utf-8').splitlines()


def test_protocol_in_metrics_json(tmp_path, capsys):
    h, r = tmp_path / 'h.txt', tmp_path / 'r.txt'
    h.write_text('für die nächsten tage .\n', encoding='utf-8'); r.write_text('für die tage .\n', encoding='utf-8')
    for name in ('slt', 'spamo-official'):
        capsys.readouterr()
        assert evaluate_cli([str(h), str(r), '--protocol', name, '--out', str(tmp_path / name)]) == 0
        assert f'[protocol {name}]' in capsys.readouterr().out
        stored = json.loads((tmp_path / name / 'metrics.json').read_text(encoding='utf-8'))
        assert stored['protocol'] == name and stored['settings']['protocol'] == name
    assert json.loads((tmp_path / 'slt' / 'metrics.json').read_text())['settings']['rouge_beta'] == 1.2
    assert json.loads((tmp_path / 'spamo-official' / 'metrics.json').read_text())['settings']['rouge_beta'] == 1.0
    with pytest.raises(SystemExit): evaluate_cli([str(h), str(r), '--protocol', 'bleu-x'])
    with pytest.raises(ValueError, match='known: slt, spamo-official'): settings_for('de', 'bleu-x')


def test_all_protocols_side_by_side(shared_data, capsys, tmp_path):
    d = shared_data / PUBLISHED / 'Phoenix' / 'GFSLT'
    files = [str(d / 'tmp_pres.txt'), str(d / 'tmp_refs.txt')]
    capsys.readouterr()
    assert evaluate_cli(files + ['--all-protocols', '--out', str(tmp_path)]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == ['slt', 'spamo-official'], out
    rows = {l.split()[0]: l.split()[1:] for l in out.splitlines()[1:]}
    assert rows['bleu4'] == ['22.23', '22.23'] and rows['rouge_l'] == ['47.53', '43.61'], out
    assert rows['rouge_beta'] == ['1.20', '1.00'] and rows['rouge_tokens'] == ['words', 'rouge_score'], out
    both = _cli_json(capsys, files + ['--all-protocols'])
    assert set(both) == {'slt', 'spamo-official'}
    for name in both:
        assert both[name] == _cli_json(capsys, files + ['--protocol', name])
        assert json.loads((tmp_path / name / 'metrics.json').read_text(encoding='utf-8')) == both[name]
    from spamo.metrics import score_protocols
    tab = score_protocols(read_lines_(files[0]), read_lines_(files[1]), 'de')
    assert tab.loc['bleu4', 'slt'] == both['slt']['bleu4'] and tab.loc['rouge_l', 'spamo-official'] == both['spamo-official']['rouge_l']
