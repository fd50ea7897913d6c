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
