"""Sign Adapter and VT-Align: padding never leaks, lengths, modes, gradients, and the loss against eq. (1) written out."""
import math
import numpy as np
import pytest
import torch
from torch import nn

from spamo.adapter import SignAdapter, MaskedBatchNorm1d, collate_features, join_streams, length_mask, pooled_lengths
from spamo.align import Temperature, pool, text_embeddings, vt_align_loss

@pytest.fixture(autouse=True)
def one_thread():
    "Tiny tensors: more threads only contend; restored after each test so other test files keep theirs."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

DS, DM, D = 6, 4, 8


def items_of(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{'spatial': torch.randn(t, DS, generator=g), 'motion': torch.randn(n, DM, generator=g)} for t, n in lengths]


def with_garbage(batch, value=1e4):
    "The batch with every padded feature row set to `value`."
    out = dict(batch)
    for k in ('spatial', 'motion'):
        pad = ~length_mask(batch[f'{k}_len'], batch[k].shape[1])
        out[k] = batch[k].masked_fill(pad[..., None], value)
    return out


def widen(batch, extra=5, value=-3e3):
    "The batch with `extra` more padded (garbage) columns in both streams; lengths unchanged."
    out = dict(batch)
    for k in ('spatial', 'motion'):
        x = batch[k]
        out[k] = torch.cat([x, torch.full((x.shape[0], extra, x.shape[2]), value)], 1)
    return out


def adapter(mode='both', seed=0, hidden=16):
    torch.manual_seed(seed)
    return SignAdapter(DS, DM, D, hidden=hidden, mode=mode)


# ---------------------------------------------------------------- collate

def test_collate_accepts_arrays_and_empty_motion():
    b = collate_features([{'spatial': np.ones((3, DS), np.float16), 'motion': np.zeros((0, DM))},
                          {'spatial': torch.ones(5, DS, dtype=torch.float64), 'motion': torch.ones(1, DM)}])
    assert b['spatial'].dtype == b['motion'].dtype == torch.float32
    assert b['spatial'].shape == (2, 5, DS) and b['motion'].shape == (2, 1, DM)
    assert b['spatial_len'].tolist() == [3, 5] and b['motion_len'].tolist() == [0, 1]
    assert b['motion'][0].abs().sum() == 0 and b['spatial'][0, 3:].abs().sum() == 0


# ---------------------------------------------------------------- lengths and masks

@pytest.mark.parametrize('mode', ['both', 'spatial', 'motion'])
def test_output_lengths_follow_the_formula(mode):
    lengths = [(1, 0), (2, 1), (3, 0), (3, 1), (4, 3), (7, 1), (16, 2), (23, 3), (57, 7), (116, 14)]
    L = torch.tensor([{'both': t + n, 'spatial': t, 'motion': n}[mode] for t, n in lengths])
    keep = L > 0                                                  # a motion-only sample needs >= 1 clip
    its = [it for it, k in zip(items_of(lengths), keep) if k]
    z, mask = adapter(mode)(**collate_features(its))
    L = L[keep]
    expected = torch.where(L >= 4, (L // 2) // 2, torch.ones_like(L))
    assert mask.sum(1).tolist() == expected.tolist() == pooled_lengths(L).tolist()
    assert mask.shape == (len(its), int(expected.max())) and z.shape == (*mask.shape, D)
    assert torch.equal(mask, length_mask(expected, mask.shape[1]))  # real positions first, then padding
    assert z[~mask].abs().sum() == 0


def test_empty_sample_and_bad_lengths_raise():
    sa = adapter()
    with pytest.raises(ValueError, match='no features'):
        sa(**collate_features(items_of([(0, 0), (5, 1)])))
    b = collate_features(items_of([(5, 1)]))
    with pytest.raises(ValueError, match='spatial_len'):
        sa(b['spatial'], torch.tensor([9]), b['motion'], b['motion_len'])
    with pytest.raises(ValueError, match='motion'):
        sa(b['spatial'], b['spatial_len'])
    with pytest.raises(ValueError, match='both, spatial, motion'):
        SignAdapter(DS, DM, D, mode='Spatial')


# ---------------------------------------------------------------- padding never leaks

@pytest.mark.parametrize('seed', [0, 1, 2])
def test_eval_output_alone_equals_output_in_a_padded_batch(seed):
    g = torch.Generator().manual_seed(seed)
    lengths = [(int(torch.randint(1, 40, (1,), generator=g)), int(torch.randint(0, 6, (1,), generator=g))) for _ in range(6)]
    lengths += [(1, 0), (3, 0), (2, 1), (1, 2)]                   # L < 4: one output position pooled from real ones only
    its = items_of(lengths, seed)
    sa = adapter(seed=seed)
    sa.train(); sa(**collate_features(its))                      # move the running stats off their init
    sa.eval()
    zb, mb = sa(**with_garbage(collate_features(its)))
    for i, it in enumerate(its):
        za, ma = sa(**collate_features([it]))
        assert torch.equal(mb[i, :ma.shape[1]], ma[0]) and not mb[i, ma.shape[1]:].any()
        torch.testing.assert_close(zb[i, :ma.shape[1]], za[0], atol=1e-6, rtol=0)


def test_train_output_ignores_padding_values():
    its = items_of([(3, 1), (30, 4), (11, 2), (2, 0)])
    b = collate_features(its)
    sa1, sa2 = adapter(), adapter()
    z1, _ = sa1(**b)
    z2, _ = sa2(**widen(with_garbage(b), extra=7))
    torch.testing.assert_close(z1, z2[:, :z1.shape[1]], atol=1e-5, rtol=0)
    for n1, n2 in zip(sa1.norms, sa2.norms):                   # the same batch statistics went into the running stats
        torch.testing.assert_close(n1.running_mean, n2.running_mean, atol=1e-6, rtol=0)
        torch.testing.assert_close(n1.running_var, n2.running_var, atol=1e-6, rtol=1e-5)


def test_train_output_alone_equals_two_copies_with_garbage_padding():
    "Two copies of A have the same real positions as A, so the same batch statistics, whatever the padding holds."
    a = collate_features(items_of([(13, 2)]))
    two = {k: torch.cat([v, v]) for k, v in a.items()}
    sa = adapter().train()
    za, _ = sa(**a)
    zt, mt = sa(**widen(two, extra=9))
    torch.testing.assert_close(zt[0, :za.shape[1]], za[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(zt[1, :za.shape[1]], za[0], atol=1e-5, rtol=0)


def test_masked_batchnorm_statistics_use_real_positions_only():
    torch.manual_seed(0)
    x, lens = torch.randn(4, 3, 9), torch.tensor([9, 1, 4, 6])
    mask = length_mask(lens, 9)
    x = torch.where(mask[:, None], x, torch.tensor(1e5))
    bn = MaskedBatchNorm1d(3, momentum=1.0, affine=False)
    y = bn(x, mask)
    real = torch.cat([x[i, :, :l] for i, l in enumerate(lens)], -1)  # (C, 20)
    torch.testing.assert_close(bn.running_mean, real.mean(1))        # momentum 1: running mean = batch mean
    torch.testing.assert_close(bn.running_var, real.var(1, unbiased=True))
    yr = torch.cat([y[i, :, :l] for i, l in enumerate(lens)], -1)
    torch.testing.assert_close(yr.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(yr.var(1, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    assert y[~mask[:, None].expand_as(y)].abs().sum() == 0


def test_train_batch_statistics_come_from_real_positions():
    "With momentum 1 the first norm's running mean is its batch mean: the mean of conv outputs over real positions."
    its = items_of([(3, 1), (30, 4), (11, 2), (2, 0)])
    sa = adapter().train()
    for norm in sa.norms: norm.momentum = 1.0
    sa(**collate_features(its))
    with torch.no_grad():
        outs = []
        for it in its:                                            # each sample alone: no padding anywhere
            b = collate_features([it])
            x, n = join_streams([(sa.spatial_proj(b['spatial']), b['spatial_len']), (sa.motion_proj(b['motion']), b['motion_len'])])
            outs.append(sa.convs[0](x.transpose(1, 2))[0])
        real = torch.cat(outs, -1)                                # (hidden, sum of L_i)
    torch.testing.assert_close(sa.norms[0].running_mean, real.mean(1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sa.norms[0].running_var, real.var(1), atol=1e-6, rtol=1e-4)


def test_no_gradient_reaches_padded_positions():
    b = collate_features(items_of([(4, 1), (21, 3), (9, 0)]))
    b = {k: (v.requires_grad_(True) if not k.endswith('len') else v) for k, v in b.items()}
    sa = adapter().train()
    z, mask = sa(**b)
    (z ** 2).sum().backward()
    for k in ('spatial', 'motion'):
        pad = ~length_mask(b[f'{k}_len'], b[k].shape[1])
        assert b[k].grad[pad].abs().sum() == 0, k
        assert b[k].grad[~pad].abs().sum() > 0, k


# ---------------------------------------------------------------- modes

def test_modes_use_only_their_streams():
    b = collate_features(items_of([(8, 2), (15, 3)]))
    new_m = dict(b, motion=torch.randn_like(b['motion']))
    new_s = dict(b, spatial=torch.randn_like(b['spatial']))
    changed = lambda sa, other: not torch.allclose(sa(**b)[0], sa(**other)[0])
    for mode, by_motion, by_spatial in [('spatial', False, True), ('motion', True, False), ('both', True, True)]:
        sa = adapter(mode).eval()
        assert changed(sa, new_m) == by_motion and changed(sa, new_s) == by_spatial, mode
    assert adapter('spatial').motion_proj is None and adapter('motion').spatial_proj is None


def test_state_dict_round_trip():
    b = collate_features(items_of([(8, 2), (15, 3)]))
    sa = adapter(); sa.train(); sa(**b); sa.eval()
    sb = adapter(seed=5); sb.load_state_dict(sa.state_dict()); sb.eval()
    torch.testing.assert_close(sa(**b)[0], sb(**b)[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_matches_cpu():
    b = collate_features(items_of([(8, 2), (15, 3), (2, 0)]))
    sa = adapter().eval()
    z, m = sa(**b)
    zc, mc = sa.cuda()(**{k: (v.cuda() if not k.endswith('len') else v) for k, v in b.items()})
    assert torch.equal(mc.cpu(), m)
    torch.testing.assert_close(zc.cpu(), z, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- VT-Align

def reference_loss(sign, sign_mask, text, text_mask, log_scale):
    "Equation (1) written out: a loop over samples, slicing for masks, log-softmax by hand."
    B = len(sign)
    zs = [sign[i][sign_mask[i].bool()].mean(0) for i in range(B)]
    zt = [text[i][text_mask[i].bool()].mean(0) for i in range(B)]
    zs, zt = [v / v.norm() for v in zs], [v / v.norm() for v in zt]
    tau = min(math.exp(log_scale), 100.)
    total = 0.
    for i in range(B):
        row = torch.stack([tau * zs[i] @ zt[j] for j in range(B)])
        col = torch.stack([tau * zs[j] @ zt[i] for j in range(B)])
        total += (row[i] - torch.log(torch.exp(row).sum())) + (col[i] - torch.log(torch.exp(col).sum()))
    return -total / (2 * B)


def random_pairs(B=6, M=7, S=5, dim=D, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    sign, text = torch.randn(B, M, dim, generator=g, dtype=dtype), torch.randn(B, S, dim, generator=g, dtype=dtype)
    sm, tm = torch.rand(B, M, generator=g) < 0.6, torch.rand(B, S, generator=g) < 0.6
    sm[:, 0] = tm[:, 0] = True
    return sign, sm, text, tm


@pytest.mark.parametrize('log_scale', [0., math.log(1 / 0.07), math.log(100.), math.log(1e4)])
@pytest.mark.parametrize('seed', [0, 1])
def test_loss_matches_reference(log_scale, seed):
    sign, sm, text, tm = random_pairs(seed=seed)
    torch.testing.assert_close(vt_align_loss(sign, sm, text, tm, log_scale),
                               reference_loss(sign, sm, text, tm, log_scale), atol=1e-6, rtol=0)


def test_matched_lower_than_shuffled_and_symmetric():
    sign, sm, _, _ = random_pairs()
    text = sign + 0.5 * torch.randn_like(sign)
    perm = torch.tensor([1, 2, 3, 4, 5, 0])
    assert vt_align_loss(sign, sm, text, sm, 2.) < vt_align_loss(sign, sm, text[perm], sm[perm], 2.)
    sign, sm, text, tm = random_pairs(seed=3)
    torch.testing.assert_close(vt_align_loss(sign, sm, text, tm, 2.), vt_align_loss(text, tm, sign, sm, 2.))
    # the same value with the batch order permuted consistently on both sides
    torch.testing.assert_close(vt_align_loss(sign, sm, text, tm, 2.), vt_align_loss(sign[perm], sm[perm], text[perm], tm[perm], 2.))


def test_padding_excluded_even_nan():
    sign, sm, text, tm = random_pairs()
    B = len(sign)
    g_sign = torch.cat([sign, torch.full((B, 4, D), 1e8, dtype=sign.dtype)], 1)
    g_text = torch.cat([text, torch.full((B, 3, D), float('nan'), dtype=text.dtype)], 1)
    g_sm = torch.cat([sm, torch.zeros(B, 4, dtype=torch.bool)], 1)
    g_tm = torch.cat([tm, torch.zeros(B, 3, dtype=torch.bool)], 1).long()     # a 0/1 attention mask works too
    g_text[:, :text.shape[1]][~tm] = float('inf')
    loss = vt_align_loss(g_sign, g_sm, g_text, g_tm, 2.)
    torch.testing.assert_close(loss, vt_align_loss(sign, sm, text, tm, 2.), atol=1e-6, rtol=0)


def test_gradients_reach_sign_and_temperature_not_text():
    emb = nn.Embedding(30, D)
    ids = torch.randint(1, 30, (4, 6)); am = (torch.arange(6) < torch.tensor([[6], [3], [2], [5]])).long()
    text = text_embeddings(emb, ids * am, am)
    assert not text.requires_grad and text[1, 3:].abs().sum() == 0
    torch.testing.assert_close(text[0], emb.weight[ids[0]].detach())
    sign = torch.randn(4, 5, D, requires_grad=True); sm = torch.ones(4, 5, dtype=torch.bool)
    temp = Temperature()
    vt_align_loss(sign, sm, text, am, temp).backward()
    assert sign.grad.abs().sum() > 0 and temp.logit_scale.grad is not None and emb.weight.grad is None


def test_temperature_init_and_clamp():
    temp = Temperature()
    assert abs(temp.logit_scale.item() - math.log(1 / 0.07)) < 1e-6 and abs(temp.scale - 1 / 0.07) < 1e-4
    sign, sm, text, tm = random_pairs()
    torch.testing.assert_close(vt_align_loss(sign, sm, text, tm, math.log(1e3)), vt_align_loss(sign, sm, text, tm, math.log(100.)))


def test_bfloat16_inputs_give_a_float32_loss():
    sign, sm, text, tm = random_pairs(dtype=torch.bfloat16)
    loss = vt_align_loss(sign, sm, text, tm, Temperature())
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    torch.testing.assert_close(loss, vt_align_loss(sign.double(), sm, text.double(), tm, math.log(1 / 0.07)).float(), atol=1e-3, rtol=0)


# ---------------------------------------------------------------- warm-up on a toy problem

def test_warmup_aligns_classes_to_their_sentences():
    "VT-Align alone (SA + temperature trained, embeddings frozen) maps noisy class features to their class text."
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    K, dim = 12, 16
    protos_s, protos_m = torch.randn(K, DS), torch.randn(K, DM)
    sentences = torch.randint(1, 40, (K, 6)) * (torch.arange(6) < torch.randint(2, 7, (K, 1)))
    E = nn.Embedding(40, dim).requires_grad_(False)
    sa, temp = SignAdapter(DS, DM, dim, hidden=24), Temperature()
    opt = torch.optim.AdamW([*sa.parameters(), *temp.parameters()], lr=3e-3, betas=(0.9, 0.98), weight_decay=0.01)
    losses = []
    for _ in range(100):
        order = torch.randperm(K, generator=g).tolist()
        its = []
        for c in order:
            T = int(torch.randint(4, 24, (1,), generator=g))
            its.append({'spatial': protos_s[c] + 1.5 * torch.randn(T, DS, generator=g),
                        'motion': protos_m[c] + 1.5 * torch.randn(max(1, T // 8), DM, generator=g)})
        ids = sentences[order]; am = ids > 0
        z, mask = sa(**collate_features(its))
        loss = vt_align_loss(z, mask, text_embeddings(E, ids, am), am, temp)
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.5 * losses[0], (losses[0], losses[-10:])
