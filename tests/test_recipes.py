"""Feature recipes: `--recipe official` equals the authors' computation (transformers processor -> hidden_states[-1][:, 0],
their S2 wrapper, their VideoMAE windows), written out here from the description of their scripts; pre- and post-norm
features are told apart; stores record the recipe; the authors' released file names import."""
import json
import numpy as np, pytest, torch
import torch.nn.functional as F
from PIL import Image
from spamo.spatial import SpatialEncoder
from spamo.motion import MotionEncoder
from spamo.store import FeatureStore, settings_hash, store_settings, write_record
from spamo.features import extract, extract_cli
from spamo.release import import_features_cli, import_released, released_settings
from spamo.translate import encoders_from_settings
from spamo.data import Sample, load_dataset, load_how2sign, read_sample
from spamo.testing import toy_manifest

torch.set_num_threads(1)


def rel(a, b): return ((a - b).norm() / b.norm()).item()


def _randomize(norm, g):
    "Give a LayerNorm random weights and biases, so that the features before and after it differ."
    with torch.no_grad():
        norm.weight.copy_(torch.rand(norm.weight.shape, generator=g) * 2 + 0.5); norm.bias.copy_(torch.randn(norm.bias.shape, generator=g))


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    "A tiny CLIPVisionModel (56 px, patch 14) and a tiny VideoMAEModel (32 px, with a final LayerNorm), saved with processors."
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPImageProcessor, VideoMAEConfig, VideoMAEModel, VideoMAEImageProcessor
    d, g = tmp_path_factory.mktemp('models'), torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                            image_size=56, patch_size=14))
    _randomize(clip.post_layernorm, g)
    clip.save_pretrained(d / 'clip')
    CLIPImageProcessor(size={'shortest_edge': 56}, crop_size={'height': 56, 'width': 56}).save_pretrained(d / 'clip')
    mae = VideoMAEModel(VideoMAEConfig(image_size=32, patch_size=16, num_frames=16, tubelet_size=2, hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, intermediate_size=64, use_mean_pooling=False))
    _randomize(mae.layernorm, g)
    mae.save_pretrained(d / 'mae')
    VideoMAEImageProcessor(size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32},
                           image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(d / 'mae')
    mae.save_pretrained(d / 'mae-bare')   # no preprocessor_config.json: VideoMAEImageProcessor's defaults
    return dict(clip=str(d / 'clip'), mae=str(d / 'mae'), mae_bare=str(d / 'mae-bare'))


@torch.no_grad()
def authors_spatial(folder, frames, scales=(1, 2)):
    "Their ViT reader: the processor's pixel values, S2 wrapping with one prefix token, the CLS of hidden_states[-1]."
    from transformers import AutoImageProcessor, CLIPVisionModel
    proc = AutoImageProcessor.from_pretrained(folder, use_fast=True)
    model = CLIPVisionModel.from_pretrained(folder, output_hidden_states=True).eval()
    x = proc([Image.fromarray(f) for f in frames], return_tensors='pt').pixel_values
    b, n = x.shape[0], x.shape[-1]
    cls = []
    for s in scales:
        y = F.interpolate(x.float(), size=n * s, mode='bicubic')                      # the whole processed crop, upsampled
        y = torch.cat([y[:, :, i * n:(i + 1) * n, j * n:(j + 1) * n] for i in range(s) for j in range(s)])  # split-major
        c = model(y).hidden_states[-1][:, 0]
        cls.append(torch.stack(c.split(b)).mean(0))                                   # mean over the s*s crops
    return torch.cat(cls, -1)


@torch.no_grad()
def authors_motion(folder, frames, window=16, overlap=8):
    "Their VideoMAE reader: pad to 16 with the last frame, windows that fit only, hidden_states[-1][:, 0] per window."
    from transformers import VideoMAEImageProcessor, VideoMAEModel
    proc, model = VideoMAEImageProcessor.from_pretrained(folder), VideoMAEModel.from_pretrained(folder).eval()
    ims = [Image.fromarray(f) for f in frames]
    if len(ims) < window: ims = ims + [ims[-1]] * (window - len(ims))
    wins = [ims[i:i + window] for i in range(0, len(ims), window - overlap) if i + window <= len(ims)]
    out = [model(**proc(wins[k:k + 8], return_tensors='pt'), output_hidden_states=True).hidden_states[-1][:, 0] for k in range(0, len(wins), 8)]
    return torch.cat(out)


def video(T, h=45, w=70, seed=0):
    "Smooth random frames (noise upsampled), closer to video than pixel noise."
    g = np.random.default_rng(seed)
    small = torch.from_numpy(g.uniform(0, 255, (T, 3, h // 4 + 1, w // 4 + 1)).astype(np.float32))
    return F.interpolate(small, size=(h, w), mode='bilinear').round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_official_spatial_equals_the_authors(models):
    frames = video(5)
    se = SpatialEncoder.from_name(models['clip'], recipe='official')
    z, ref = se.encode(frames), authors_spatial(models['clip'], frames)
    assert z.shape == ref.shape == (5, 64)
    r = rel(z, ref); print(f'spatial official vs the authors: relative error {r:.1e}')
    assert r < 1e-2
    assert rel(se.encode(frames[2:3]), ref[2:3]) < 1e-2                       # a frame's feature does not depend on its neighbours


@pytest.mark.parametrize('T, clips', [(1, 1), (15, 1), (16, 1), (17, 1), (29, 2), (116, 13)])
def test_official_motion_equals_the_authors(models, T, clips):
    frames = video(T, 40, 52, seed=T)
    z, ref = MotionEncoder.from_name(models['mae'], recipe='official').encode(frames), authors_motion(models['mae'], frames)
    assert z.shape == ref.shape == (clips, 32)
    r = rel(z, ref); print(f'motion official vs the authors, T={T}: {len(z)} clips, relative error {r:.1e}')
    assert r < 1e-2


def test_folder_without_processor_config_gets_the_class_defaults(models):
    me = MotionEncoder.from_name(models['mae_bare'], recipe='official')
    assert (me.processing.mode, me.processing.mean, me.processing.size) == ('bilinear', (0.5, 0.5, 0.5), 32)
    me2 = MotionEncoder.from_name(models['mae'], recipe='official')
    assert me2.processing.mean == (0.485, 0.456, 0.406)


def test_pre_and_post_norm_are_told_apart(models):
    "The 'spamo' recipe reads the token after the final LayerNorm: with a non-trivial norm it is another feature."
    frames = video(4)
    so, ss = SpatialEncoder.from_name(models['clip'], recipe='official'), SpatialEncoder.from_name(models['clip'], recipe='spamo')
    with torch.inference_mode():
        x = torch.randn(2, 3, 56, 56)
        pre, post = so.backbone(x), ss.backbone(x)
        assert torch.allclose(ss.backbone.model.post_layernorm(pre), post, atol=1e-5)   # the same token, before / after the norm
    assert rel(ss.encode(frames), so.encode(frames)) > 0.1
    mo, ms = MotionEncoder.from_name(models['mae'], recipe='official'), MotionEncoder.from_name(models['mae'], recipe='spamo')
    v = video(16, 40, 52)
    assert rel(ms.encode(v), mo.encode(v)) > 0.1
    with torch.inference_mode():
        y = torch.randn(1, 16, 3, 32, 32)
        assert torch.allclose(ms.backbone.model.layernorm(mo.backbone(y)), ms.backbone(y), atol=1e-5)


def test_extract_official_records_the_recipe_and_refuses_others(models, tmp_path):
    samples = load_dataset('manifest', toy_manifest(tmp_path / 'toy', lengths=(3, 17, 29), size=48), 'train')
    rep = extract(samples, tmp_path / 'f', models['clip'], models['mae'], dtype='fp32', store_dtype='float32', progress=False, recipe='official')
    assert len(rep['extracted']) == 3
    store = FeatureStore(tmp_path / 'f')
    assert store.recipe == store.settings['recipe'] == 'official'
    for s in samples:
        frames = read_sample(s)[0]
        assert rel(store[s.id]['spatial'], authors_spatial(models['clip'], frames)) < 1e-2
        m = authors_motion(models['mae'], frames)
        assert store[s.id]['motion'].shape == m.shape and rel(store[s.id]['motion'], m) < 1e-2
    with pytest.raises(ValueError, match="recipe 'official' \\(store\\) != 'spamo'"):
        extract(samples, tmp_path / 'f', models['clip'], models['mae'], dtype='fp32', store_dtype='float32', progress=False, recipe='spamo')
    with pytest.raises(ValueError, match="has recipe 'spamo', not 'official'"):
        extract(samples, tmp_path / 'g', SpatialEncoder.from_name('tiny', recipe='spamo'), 'tiny', progress=False, recipe='official')
    se, me = encoders_from_settings(store.settings)                              # translation rebuilds the official encoders
    assert (se.recipe, me.recipe) == ('official', 'official')
    assert rel(se.encode(read_sample(samples[1])[0]), store[samples[1].id]['spatial']) < 1e-5
    with pytest.raises(ValueError, match="made with recipe 'official'"): encoders_from_settings(store.settings, recipe='spamo')


def test_cli_recipe_option(models, tmp_path):
    man = toy_manifest(tmp_path / 'toy', lengths=(20,), size=48)
    args = ['--dataset', 'manifest', '--root', str(man), '--spatial', models['clip'], '--motion', models['mae'], '--no-progress', '--dtype', 'fp32']
    assert extract_cli(args + ['--out', str(tmp_path / 'a')]) == 0                      # default: official
    assert extract_cli(args + ['--out', str(tmp_path / 'b'), '--recipe', 'spamo']) == 0
    a, b = FeatureStore(tmp_path / 'a'), FeatureStore(tmp_path / 'b')
    assert (a.recipe, b.recipe) == ('official', 'spamo')
    i = a.ids[0]
    assert (len(a[i]['motion']), len(b[i]['motion'])) == (1, 2)                      # T=20: no tail clip / an end-aligned one
    assert extract_cli(args + ['--out', str(tmp_path / 'a'), '--recipe', 'spamo']) == 2  # another recipe into the store: refused


def test_store_without_recipe_opens_as_spamo(tmp_path):
    st = store_settings(SpatialEncoder.from_name('tiny', recipe='spamo'), MotionEncoder.from_name('tiny', recipe='spamo'))
    old = {k: v for k, v in st.items() if k != 'recipe'}
    s = FeatureStore(tmp_path / 'old', old, create=True)
    write_record(s.file('v'), 'v', torch.randn(3, 256), torch.randn(1, 128), old)
    s.scan(); s.write_index()
    reopened = FeatureStore(tmp_path / 'old', st)                                     # today's 'spamo' settings open it
    assert reopened.recipe == 'spamo' and reopened.is_done('v') and settings_hash(old) == settings_hash(st)
    with pytest.raises(ValueError, match="recipe 'spamo' \\(store\\) != 'official'"): FeatureStore(tmp_path / 'old', st | dict(recipe='official'))
    assert encoders_from_settings(old)[0].recipe == 'spamo'


def _release(d, names, width, length):
    d.mkdir(parents=True, exist_ok=True)
    for n in names: np.save(d / n, np.random.default_rng(len(n)).standard_normal((length, width)).astype(np.float32))


def test_released_files_import_and_unpaired_are_reported(tmp_path):
    sd, md = tmp_path / 'clip-vit-large-patch14_feat_Phoenix14T' / 'test', tmp_path / 'mae_feat_Phoenix14T' / 'test'
    _release(sd, ['25October_2010_Monday_tagesschau-17_s2wrapping.npy', '27January_2013_Sunday_tagesschau-8_s2wrapping.npy',
                  'only-spatial_s2wrapping.npy'], 16, 7)
    _release(md, ['25October_2010_Monday_tagesschau-17_overlap-8.npy', '27January_2013_Sunday_tagesschau-8_overlap-8-pretrained.npy',
                  'only-motion_overlap-8.npy'], 8, 2)
    store = import_released(sd, md, tmp_path / 'store', released_settings(16, 8))
    assert sorted(store.ids) == ['25October_2010_Monday_tagesschau-17', '27January_2013_Sunday_tagesschau-8']
    assert store.recipe == 'official'
    assert torch.allclose(store['25October_2010_Monday_tagesschau-17']['spatial'],
                          torch.from_numpy(np.load(sd / '25October_2010_Monday_tagesschau-17_s2wrapping.npy')), atol=1e-2)
    un = json.loads((tmp_path / 'store' / 'unpaired.json').read_text())
    assert sorted((u['key'], u['reason']) for u in un) == [('only-motion', "no spatial file for 'only-motion'"),
                                                         ('only-spatial', "no motion file for 'only-spatial'")]
    assert store.unpaired == un
    assert import_features_cli(['--spatial-dir', str(sd), '--motion-dir', str(md), '--out', str(tmp_path / 'cli')]) == 1
    assert (FeatureStore(tmp_path / 'cli').spatial_dim, FeatureStore(tmp_path / 'cli').motion_dim, len(FeatureStore(tmp_path / 'cli'))) == (16, 8, 2)
    assert import_features_cli(['--spatial-dir', str(sd), '--motion-dir', str(md), '--out', str(tmp_path / 'cli2'),
                                '--settings-from', str(tmp_path / 'cli')]) == 1


def test_how2sign_release_names_map_to_sentences(shared_data, tmp_path):
    "How2Sign files carry the start time: `<name>_<START_REALIGNED>_s2wrapping.npy` becomes the sentence's record."
    samples = load_how2sign(shared_data / 'how2sign' / 'annotations', 'test')[:3]
    names = [f"{s.id}_{s.extra['start_realigned']}" for s in samples[:2]] + [f"{samples[2].extra['video_name']}_{samples[2].extra['start_realigned']}"]
    _release(tmp_path / 's', [f'{n}_s2wrapping.npy' for n in names] + ['nobody_1.5_s2wrapping.npy'], 16, 5)
    _release(tmp_path / 'm', [f'{n}_overlap-8.npy' for n in names] + ['nobody_1.5_overlap-8.npy'], 8, 1)
    store = import_released(tmp_path / 's', tmp_path / 'm', tmp_path / 'store', released_settings(16, 8), samples)
    assert sorted(store.ids) == sorted(s.id for s in samples)
    assert [u['key'] for u in store.unpaired] == ['nobody_1.5', 'nobody_1.5']
