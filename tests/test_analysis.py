"Visual-token analysis (spamo.analysis, nbs/08_visual_tokens.ipynb): exact nearest tokens, KDE entropy, a trained run vs its untrained adapter."
import json, os, time
from pathlib import Path
import numpy as np, pytest, torch
from spamo.analysis import nearest_tokens, kde_entropy, analyse_run


def _brute(z, e, exclude=()):
    "Every position against every entry: differences squared and summed (in blocks of rows to bound memory)."
    out = []
    for a in range(0, len(z), 200):
        d = ((z[a:a + 200, None].double() - e[None].double()) ** 2).sum(-1)
        d[:, list(exclude)] = float('inf')
        out.append(d.argmin(1))
    return torch.cat(out)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_nearest_tokens_match_brute_force(dtype):
    g = torch.Generator().manual_seed(1)
    z, e = torch.randn(1500, 48, generator=g, dtype=dtype), torch.randn(600, 48, generator=g, dtype=dtype)
    z[:50] = e[100:150] + 1e-4 * torch.randn(50, 48, generator=g, dtype=dtype)   # some positions right on an entry
    ids, dist = nearest_tokens(z, e, chunk=333)
    assert ids.tolist() == _brute(z, e).tolist()
    assert ids[:50].tolist() == list(range(100, 150))
    ex = [3, 5, 100, 101]
    assert nearest_tokens(z, e, chunk=1000, exclude=ex)[0].tolist() == _brute(z, e, ex).tolist()


def test_kde_entropy_tighter_is_lower():
    g = np.random.default_rng(0)
    base = g.normal(size=(1200, 5))
    widths = [0.2, 0.5, 1.0, 2.0]
    raw = [kde_entropy(w * base, 5, standardize=False) for w in widths]
    assert raw == sorted(raw) and raw[0] < raw[-1]                                  # tighter Gaussian: lower entropy
    assert abs((raw[-1] - raw[0]) - 5 * np.log(10)) < 0.05                          # by d log(sigma ratio)
    centres = g.normal(0, 3, (8, 12))
    mix = lambda sd: np.concatenate([c + g.normal(0, sd, (150, 12)) for c in centres])
    std = [kde_entropy(mix(sd), 6) for sd in (0.2, 0.6, 1.5)]                       # standardised: scale-free
    assert std == sorted(std)
    assert abs(kde_entropy(10 * base, 5) - kde_entropy(base, 5)) < 1e-9


def _small_run(out: Path) -> Path:
    "A SpaMo run trained on a small SynthSign set (tiny encoders, a tiny T5), the way `spamo demo` trains, but smaller."
    from spamo.demo import prepare_synthsign
    from spamo.tiny import prepare_tiny_llm
    from spamo.presets import resolve_config
    from spamo.train import train
    from spamo.data import load_dataset
    root, feats = prepare_synthsign(out / 'data', n_train=SMALL['n_train'], n_dev=16, n_test=SMALL['n_test'], size=32, seed=0, progress=False)
    llm = prepare_tiny_llm([s.text for s in load_dataset('phoenix14t', root, 'train')], out / 'llm', steps=SMALL['pretrain_steps'], seed=0)
    steps = SMALL['max_steps']
    cfg = resolve_config(run_dir=str(out / 'spamo'), data_root=str(root), features=str(feats), llm=str(llm),
                             llm_dtype='fp32', precision='fp32', adapter_hidden=128, batch_size=16, lr=1e-3, min_lr=1e-4,
                             lr_warmup_steps=10, vt_warmup_steps=steps // 10, max_steps=steps, eval_every=steps,
                             save_every=steps, num_beams=1, max_new_tokens=24, seed=0, num_examples=0)
    train(cfg, progress=False)
    return Path(cfg.train.run_dir)

SMALL = dict(n_train=200, n_test=60, pretrain_steps=60, max_steps=300)


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    "The demo's SpaMo run if SPAMO_DEMO_RUN names one (e.g. runs/demo/spamo); a small run trained here if SPAMO_SLOW=1."
    if os.environ.get('SPAMO_DEMO_RUN'): return Path(os.environ['SPAMO_DEMO_RUN'])
    if os.environ.get('SPAMO_SLOW') != '1':
        pytest.skip('needs a trained run: set SPAMO_DEMO_RUN=runs/demo/spamo (after `spamo demo`), or SPAMO_SLOW=1 to train '
                    'a small one here (3-7 min on 2 CPU cores: fewer than ~300 steps learn no visual tokens)')
    return _small_run(tmp_path_factory.mktemp('analysis'))


def test_trained_run_agrees_with_glosses_more_than_untrained_adapter(run_dir, tmp_path):
    t0 = time.time()
    res = analyse_run(run_dir, 'test', out_dir=tmp_path, max_points=600, seed=0)
    info, s = res['info'], res['summary']
    print(f"\nanalysed {info['videos']} videos ({info['positions']} positions) in {time.time() - t0:.1f} s")
    print(s.to_string())
    assert info['lexicon']                                                          # SynthSign: glosses map to words
    gloss, text = info['gloss_lex_agreement'], info['text_word_agreement']
    # gloss words among the visual tokens (cosine: the Euclidean neighbours collapse onto the shortest rows of the tiny T5)
    assert gloss['cosine']['trained'] > gloss['cosine']['untrained adapter'], gloss
    # translation words among the paper's (Euclidean) visual tokens
    assert text['euclidean']['trained'] > text['euclidean']['untrained adapter'], text
    assert (tmp_path / 'tsne.png').stat().st_size > 5000
    assert json.loads((tmp_path / 'analysis.json').read_text())['gloss_lex_agreement'] == gloss
    assert len(res['examples']) >= 2 and {'visual tokens', 'gloss', 'translation'} <= set(res['examples'].columns)
