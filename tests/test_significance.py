"""Intervals and significance: sacreBLEU's bootstrap intervals of BLEU-4 and spamo's ROUGE-L (a sacreBLEU `Metric`),
paired bootstrap and approximate randomization against a baseline, `spamo evaluate --baseline`, and the results
files' optional interval and p-value columns. Few resamples here (the defaults are timed in nbs/05b_metrics.ipynb)."""
import json, math, random, re
import pytest
from sacrebleu.metrics import BLEU
from sacrebleu.significance import PairedTest
from spamo.metrics import (SEED, RougeL, bootstrap_intervals, corpus_bleu, corpus_rouge_l, evaluate_predictions, read_lines,
                           sacrebleu_seed, settings_for)
from spamo.evaluate import PUBLISHED, evaluate_cli, paired_significance, read_scores_txt
from spamo.results import interval_err, ordering_verdicts, orderings_markdown

WORDS = 'am tag regen schnee sonne norden süden morgen heute wind nacht wolken straße für nächsten gewitter'.split()
DE = settings_for('de')


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [' '.join(rng.choice(WORDS) for _ in range(rng.randint(5, 14))) + ' .' for _ in range(n)]


def noisy(refs: list[str], p: float, seed: int = 1) -> list[str]:
    "Each word of `refs` replaced by a random one with probability `p`: a system with some overlap."
    rng = random.Random(seed)
    return [' '.join(rng.choice(WORDS) if rng.random() < p else w for w in r.split()) for r in refs]


REFS = sentences(642)
HYPS = noisy(REFS, 0.35)


# --- ROUGE-L as a sacreBLEU Metric --------------------------------------------------------------------------------
def lcs_table(a: list, b: list) -> int:
    "The textbook dynamic programme for the longest common subsequence."
    t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b): t[i + 1][j + 1] = t[i][j] + 1 if x == y else max(t[i][j + 1], t[i + 1][j])
    return t[-1][-1]


def reference_rouge_l(hyps, refs, tokens, beta=1.2) -> float:
    "ROUGE-L written out: mean over sentences of (1+b^2) P R / (R + b^2 P), P = LCS/|hyp|, R = LCS/|ref|, times 100."
    f = []
    for h, r in zip(hyps, refs):
        h, r = tokens(h), tokens(r)
        lcs = lcs_table(h, r)
        p, rc = (lcs / len(h), lcs / len(r)) if lcs else (0, 0)
        f.append((1 + beta ** 2) * p * rc / (rc + beta ** 2 * p) if lcs else 0.0)
    return 100 * sum(f) / len(f)


UNICODE_WORDS = lambda t: re.findall(r'\w+|[^\w\s]', t)


def test_rouge_metric_equals_corpus_rouge_l_and_the_definition():
    hyps, refs = HYPS[:200] + ['für die nächsten tage'], REFS[:200] + ['für die tage']
    want = reference_rouge_l(hyps, refs, UNICODE_WORDS)
    got = RougeL().corpus_score(hyps, [refs]).score
    assert got == corpus_rouge_l(hyps, refs, DE)                  # the same sum in the same order: equal, not close
    assert math.isclose(got, want, rel_tol=1e-12), (got, want)
    zh_h, zh_r = ['我想吃米饭', '今天天气很好'], ['今天我想吃面条', '今天天气好']
    chars = lambda t: [c for c in t if not c.isspace()]
    assert math.isclose(RougeL('chars').corpus_score(zh_h, [zh_r]).score, reference_rouge_l(zh_h, zh_r, chars), rel_tol=1e-12)
    assert math.isclose(RougeL(beta=1.0).corpus_score(hyps, [refs]).score, reference_rouge_l(hyps, refs, UNICODE_WORDS, 1.0), rel_tol=1e-12)


def test_rouge_metric_on_published_predictions(shared_data):
    d = shared_data / PUBLISHED / 'Phoenix' / 'GFSLT'
    h, r = read_lines(d / 'tmp_pres.txt'), read_lines(d / 'tmp_refs.txt')
    got = RougeL().corpus_score(h, [r]).score
    assert got == corpus_rouge_l(h, r, DE) and abs(got - 100 * read_scores_txt(d / 'scores.txt')['ROUGE_L']) < 0.01


# --- Intervals ----------------------------------------------------------------------------------------------------
def test_interval_contains_corpus_bleu_and_narrows_with_more_sentences():
    small, big = (bootstrap_intervals(HYPS[:n], REFS[:n], DE, resamples=300) for n in (60, 642))
    for iv, n in ((small, 60), (big, 642)):
        b = iv['bleu4']
        assert b['score'] == corpus_bleu(HYPS[:n], REFS[:n], DE)[0]['bleu4']
        assert b['low'] < b['score'] < b['high'], b
        assert iv['rouge_l']['low'] < iv['rouge_l']['score'] < iv['rouge_l']['high']
    width = lambda iv, k: iv[k]['high'] - iv[k]['low']
    assert width(big, 'bleu4') < 0.6 * width(small, 'bleu4'), (width(big, 'bleu4'), width(small, 'bleu4'))  # ~ 1/sqrt(n): 0.31
    assert width(big, 'rouge_l') < 0.6 * width(small, 'rouge_l')


def test_same_seed_same_interval():
    a, b = (bootstrap_intervals(HYPS[:100], REFS[:100], DE, resamples=200) for _ in range(2))
    c = bootstrap_intervals(HYPS[:100], REFS[:100], DE, resamples=200, seed=99)
    assert a == b and a['seed'] == SEED
    assert c['bleu4']['low'] != a['bleu4']['low'] and c['bleu4']['score'] == a['bleu4']['score']
    assert 'bs:200|seed:99|' in c['bleu4']['signature'] and 'bs:200|seed:99|' in c['rouge_l']['signature']
    with pytest.raises(ValueError, match='positive integer'): bootstrap_intervals(HYPS[:10], REFS[:10], DE, seed=0)
    with sacrebleu_seed(7): pass
    assert 'SACREBLEU_SEED' not in __import__('os').environ


def test_metrics_json_carries_intervals(tmp_path):
    m = evaluate_predictions(list(range(100)), HYPS[:100], REFS[:100], 'de', run_dir=tmp_path, verbose=False, resamples=100)
    stored = json.loads((tmp_path / 'metrics.json').read_text(encoding='utf-8'))
    iv = stored['intervals']
    assert (iv['resamples'], iv['seed'], iv['confidence']) == (100, SEED, 0.95)
    assert iv['bleu4']['score'] == m['bleu4'] and iv['rouge_l']['score'] == m['rouge_l']
    assert set(iv['bleu4']) == {'score', 'mean', 'low', 'high', 'signature'}


# --- Paired tests -------------------------------------------------------------------------------------------------
def p_values(r) -> list:
    return [r[k][p] for k in ('bleu4', 'rouge_l') for p in ('p_bs', 'p_ar')]


def test_identical_systems_are_not_significant():
    r = paired_significance(HYPS[:100], HYPS[:100], REFS[:100], DE, resamples=200, trials=500)
    assert p_values(r) == [1.0] * 4 and r['bleu4']['delta'] == 0
    # sacreBLEU's own count leaves ties out: the same system looks significant (1/(N+1)); ours counts them
    with sacrebleu_seed(SEED):
        raw = PairedTest([('a', HYPS[:100]), ('b', HYPS[:100])], {'b': BLEU(force=True)}, [REFS[:100]], 'ar', 500)()[1]['BLEU'][1]
    assert raw.p_value == 1 / 501


def test_one_sentence_apart_is_not_significant():
    one = list(HYPS[:100]); one[3] = REFS[3]
    r = paired_significance(one, HYPS[:100], REFS[:100], DE, resamples=200, trials=500)
    assert r['bleu4']['delta'] > 0 and min(p_values(r)) > 0.05, r


def test_references_beat_a_random_system():
    r = paired_significance(REFS[:100], sentences(100, seed=5), REFS[:100], DE, resamples=200, trials=500)
    assert max(p_values(r)) < 0.05 and r['bleu4']['delta'] > 50, r
    assert r['bleu4']['signature_bs'].startswith('nrefs:1|bs:200|seed:12345|') and 'ar:500' in r['rouge_l']['signature_ar']


def test_paired_tests_are_deterministic_given_the_seed():
    base = noisy(REFS[:150], 0.45, seed=3)
    a, b = (paired_significance(HYPS[:150], base, REFS[:150], DE, 200, 300) for _ in range(2))
    assert a == b and 0 < a['bleu4']['p_bs'] <= 1


# --- The command line ---------------------------------------------------------------------------------------------
@pytest.fixture
def files(tmp_path):
    out = {}
    for name, lines in dict(hyp=HYPS[:80], ref=REFS[:80], base=noisy(REFS[:80], 0.6, seed=4)).items():
        (p := tmp_path / f'{name}.txt').write_text('\n'.join(lines) + '\n', encoding='utf-8'); out[name] = str(p)
    return out


def test_cli_baseline_prints_p_values_and_stores_them(files, tmp_path, capsys):
    args = [files['hyp'], files['ref'], '--baseline', files['base'], '--resamples', '200', '--trials', '400', '--out', str(tmp_path / 'run')]
    assert evaluate_cli(args) == 0
    out = capsys.readouterr().out
    assert '95% CI (bootstrap, 200 resamples, seed 12345): BLEU-4' in out and 'bs:200|seed:12345' in out, out
    assert re.search(r'BLEU-4 [\d.]+ vs [\d.]+ \([+-][\d.]+\): p\(bs\) = [\d.]+, p\(ar\) = [\d.]+', out), out
    assert re.search(r'ROUGE-L [\d.]+ vs [\d.]+ \([+-][\d.]+\): p\(bs\) = [\d.]+, p\(ar\) = [\d.]+', out), out
    m = json.loads((tmp_path / 'run' / 'metrics.json').read_text(encoding='utf-8'))
    s = m['significance']
    assert (s['baseline'], s['resamples'], s['trials'], s['seed']) == (files['base'], 200, 400, SEED)
    assert s['bleu4']['score'] == m['bleu4'] and s['bleu4']['p_bs'] < 0.05        # 35% of words wrong against 60%
    assert evaluate_cli([*args[:-2], '--json']) == 0
    assert json.loads(capsys.readouterr().out)['significance'] == s              # the same seed, the same p-values


def test_cli_baseline_with_other_line_count_exits_2_naming_both(files, tmp_path, capsys):
    short = tmp_path / 'short.txt'; short.write_text('\n'.join(HYPS[:79]) + '\n', encoding='utf-8')
    assert evaluate_cli([files['hyp'], files['ref'], '--baseline', str(short)]) == 2
    err = capsys.readouterr().err
    assert str(short) in err and files['hyp'] in err and '79 lines' in err and '80 lines' in err, err
    assert evaluate_cli([str(short), files['ref']]) == 2                            # a hypothesis file against the references
    err = capsys.readouterr().err
    assert str(short) in err and files['ref'] in err, err
    assert evaluate_cli([files['hyp'], files['ref'], '--seed', '0']) == 2
    assert 'seed' in capsys.readouterr().err


def test_cli_runs_matched_by_id(tmp_path, capsys):
    ids = [f'n{i:03d}' for i in range(60)]
    evaluate_predictions(ids, HYPS[:60], REFS[:60], 'de', run_dir=tmp_path / 'a' / 'eval-test', verbose=False)
    base = noisy(REFS[:60], 0.6, seed=4)
    back = list(reversed(range(60)))                                              # the baseline's rows in another order
    evaluate_predictions([ids[i] for i in back], [base[i] for i in back], [REFS[i] for i in back], 'de',
                         run_dir=tmp_path / 'b' / 'eval-test', verbose=False)
    capsys.readouterr()
    assert evaluate_cli([str(tmp_path / 'a'), '--split', 'test', '--baseline', str(tmp_path / 'b'), '--resamples', '100', '--trials', '100', '--json']) == 0
    got = json.loads(capsys.readouterr().out)
    want = paired_significance(HYPS[:60], base, REFS[:60], DE, 100, 100, name=str(tmp_path / 'b'))
    assert got['significance'] == want and 'intervals' in got
    evaluate_predictions(ids, base, REFS[1:61], 'de', run_dir=tmp_path / 'c' / 'eval-test', verbose=False)   # other references
    assert evaluate_cli([str(tmp_path / 'a'), '--baseline', str(tmp_path / 'c')]) == 2
    assert 'different references' in capsys.readouterr().err


# --- Real material: two published systems on PHOENIX14T test ------------------------------------------------------
def test_published_systems_compared(shared_data, capsys):
    ph = shared_data / PUBLISHED / 'Phoenix'
    args = [str(ph / 'GFSLT-CiCO' / 'tmp_pres.txt'), str(ph / 'GFSLT-CiCO' / 'tmp_refs.txt'), '--baseline', str(ph / 'GFSLT' / 'tmp_pres.txt')]
    capsys.readouterr()
    assert evaluate_cli([*args, '--trials', '2000', '--json']) == 0
    m = json.loads(capsys.readouterr().out)
    s, iv = m['significance'], m['intervals']
    assert (round(s['bleu4']['score'], 2), round(s['bleu4']['baseline'], 2)) == (23.55, 22.23)           # scores.txt of both
    assert (round(s['rouge_l']['score'], 2), round(s['rouge_l']['baseline'], 2)) == (48.55, 47.53)
    assert iv['bleu4']['low'] < 23.55 < iv['bleu4']['high'] and m['n'] == 642
    assert 0 < s['bleu4']['p_bs'] < 0.05, s['bleu4']                              # +1.32 BLEU-4 on 642 sentences
    with capsys.disabled():
        print(f"\nPHOENIX14T test, GFSLT-CiCO vs GFSLT (642 sentences, seed {s['seed']}): "
              f"BLEU-4 {s['bleu4']['score']:.2f} [{iv['bleu4']['low']:.2f}, {iv['bleu4']['high']:.2f}] vs {s['bleu4']['baseline']:.2f}, "
              f"p(bs) {s['bleu4']['p_bs']:.4f}, p(ar) {s['bleu4']['p_ar']:.4f}; ROUGE-L {s['rouge_l']['score']:.2f} vs "
              f"{s['rouge_l']['baseline']:.2f}, p(bs) {s['rouge_l']['p_bs']:.4f}, p(ar) {s['rouge_l']['p_ar']:.4f}")


def test_published_orderings_as_a_results_table(shared_data):
    "Per-row p-values against a reference row, as `spamo reproduce` CSVs would carry them, give the Markdown verdicts."
    import pandas as pd
    ph, ref = shared_data / PUBLISHED / 'Phoenix', 'GFSLT'
    refs, base = read_lines(ph / ref / 'tmp_refs.txt'), read_lines(ph / ref / 'tmp_pres.txt')
    rows = [dict(row=ref, bleu4=corpus_bleu(base, refs, DE)[0]['bleu4'], bleu4_paper=22.23)]
    for name, paper in (('GFSLT-CiCO', 23.55), ('SignCL', 22.69)):
        h = read_lines(ph / name / 'tmp_pres.txt')
        s = paired_significance(h, base, refs, DE, resamples=300, trials=300)
        iv = bootstrap_intervals(h, refs, DE, resamples=300)
        rows.append(dict(row=name, bleu4=s['bleu4']['score'], bleu4_paper=paper, bleu4_p=s['bleu4']['p_bs'],
                         bleu4_low=iv['bleu4']['low'], bleu4_high=iv['bleu4']['high']))
    df = pd.DataFrame(rows)
    v = ordering_verdicts(df, 'bleu4', ref)
    assert v.verdict.tolist() == ['holds', 'undecided'], v                       # +1.32 significant, +0.45 not
    md = orderings_markdown(df, ['bleu4'], ref)
    assert f'against `{ref}`' in md and '| GFSLT-CiCO | holds' in md and '| SignCL | undecided' in md, md
    err = interval_err(df, 'bleu4')
    assert err.shape == (2, 3) and (err[:, 1:] > 1).all() and (err[:, 0] == 0).all()   # no interval on the reference row: no bar
