"""One CLI grammar: the same flag for the same thing across commands, and the documented exit statuses
(0 done, 1 some items failed, 2 usage or input error)."""
import contextlib, io
import pytest
from spamo.cli import COMMANDS, main


def help_of(cmd: str) -> str:
    with contextlib.redirect_stdout(io.StringIO()) as out, pytest.raises(SystemExit): main([cmd, '--help'])
    return out.getvalue()


@pytest.mark.parametrize('cmd, flags', [
    ('demo', ['--out']), ('extract', ['--out', '--root']), ('import-features', ['--out', '--root']),
    ('translations', ['--out', '--root']), ('reproduce', ['--out']), ('import-checkpoint', ['--out', '--root']),
    ('evaluate', ['--out']), ('translate', ['--num-beams'])])
def test_the_same_flag_for_the_same_thing(cmd, flags):
    "A folder written is `--out`, a dataset root `--root`, a beam width `--num-beams` (old spellings stay as aliases)."
    text = help_of(cmd)
    for f in flags: assert f'{f} ' in text or f'{f},' in text, (cmd, f)


def test_every_command_has_help():
    assert all(help_of(c) for c in COMMANDS)


@pytest.mark.parametrize('argv', [
    ['evaluate', 'no-such-hyp.txt', 'no-such-ref.txt'],
    ['train', '-p', 'max_steps', 'ten'],
    ['train', '-f', 'no-such-config.yaml'],
    ['reproduce', 'table3', '--dry-run', '--train', 'max_steps', 'ten'],
    ['no-such-command']])
def test_usage_and_input_errors_exit_2(argv):
    with contextlib.redirect_stderr(io.StringIO()) as err: assert main(argv) == 2
    assert err.getvalue().strip(), argv                                    # and say why


def test_extraction_defaults_agree_everywhere():
    "`spamo extract`, the Python `extract` and the extraction job's parameters take one record of defaults (`EXTRACTION`)."
    import inspect, json
    from pathlib import Path
    from spamo.features import EXTRACTION, extract, extract_parser
    from spamo.spatial import default_spatial
    a = vars(extract_parser().parse_args(['--dataset', 'manifest', '--root', 'r', '--out', 'o']))
    for k, v in EXTRACTION.items(): assert a[k] == v, (k, a[k], v)
    assert a['spatial'] is None and default_spatial(a['recipe']) == 'openai/clip-vit-large-patch14'   # the recipe's encoder
    sig = inspect.signature(extract).parameters
    for k in ('dtype', 'on_error', 'store_dtype', 'every', 'motion'): assert sig[k].default == EXTRACTION[k], k
    assert sig['spatial'].default is None and sig['recipe'].default is None            # None: EXTRACTION's recipe and its encoder
    assert EXTRACTION['recipe'] == 'official' and EXTRACTION['on_error'] == 'skip'
    nb = json.loads((Path(__file__).resolve().parents[1] / 'nbs' / '02a_features.ipynb').read_text())
    src = next(''.join(c['source']) for c in nb['cells'] if 'parameters' in c['metadata'].get('tags', []))
    g = {}; exec(src, g)
    for k in set(EXTRACTION) - {'motion'}: assert g[k] == EXTRACTION[k], k      # the job's encoders are smoke's ('tiny')
    assert (g['spatial'], g['motion']) == ('tiny', 'tiny')
