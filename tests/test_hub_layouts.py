"""Every default model name loads as the hub lays it out: tiny folders saved with the hub repos' architectures
(`openai/clip-vit-large-patch14`: a whole CLIPModel; `MCG-NJU/videomae-large`: a VideoMAEForPreTraining;
`google/flan-t5-xl`: a T5ForConditionalGeneration; Llama and Qwen2.5: ...ForCausalLM), loaded through the code path a
hub name takes, with their saved weights; a folder of another kind is refused, naming the folder and what it holds."""
import json, re
import numpy as np, pytest, torch
from spamo.spatial import IMAGE_MODELS, ImageProcessing, SpatialEncoder, as_frames, normalize, process_images, resize_crop, s2_images
from spamo.motion import MotionEncoder, clip_indices
from spamo.llm import load_llm, llm_width
from spamo.config import ModelConfig
from spamo.model import build_model
from spamo.tiny import train_tokenizer, tiny_t5, tiny_causal
from spamo.testing import TOY_SENTENCES

torch.set_num_threads(1)
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


def _randomize(norm, g):
    "Random LayerNorm weights, so that the features before and after it differ."
    with torch.no_grad():
        norm.weight.copy_(torch.rand(norm.weight.shape, generator=g) * 2 + 0.5); norm.bias.copy_(torch.randn(norm.bias.shape, generator=g))


def _arch(folder): return json.loads((folder / 'config.json').read_text())['architectures']


@pytest.fixture(scope='module')
def hub(tmp_path_factory):
    "Tiny models saved as the hub repos hold them (with their image processors), and folders of other kinds."
    import transformers as tf
    d, g = tmp_path_factory.mktemp('hub'), torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    clip = tf.CLIPModel(tf.CLIPConfig(text_config=dict(TINY, vocab_size=64, bos_token_id=0, eos_token_id=1, pad_token_id=1),
                                      vision_config=dict(TINY, image_size=32, patch_size=8), projection_dim=16))
    _randomize(clip.vision_model.post_layernorm, g)
    clip.save_pretrained(d / 'clip')
    tf.CLIPImageProcessor(size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32}).save_pretrained(d / 'clip')
    tf.CLIPTextModel(clip.config.text_config).save_pretrained(d / 'clip-text')
    mae = tf.VideoMAEForPreTraining(tf.VideoMAEConfig(image_size=32, patch_size=16, num_frames=4, tubelet_size=2, use_mean_pooling=False,
                                                      decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                                                      decoder_intermediate_size=32, **TINY))
    _randomize(mae.videomae.layernorm, g)
    mae.save_pretrained(d / 'mae')
    tf.VideoMAEImageProcessor(size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32}).save_pretrained(d / 'mae')
    tf.BertModel(tf.BertConfig(vocab_size=64, **TINY)).save_pretrained(d / 'bert')
    llms = {}
    for name, layout, build in (('t5', 't5', lambda t: tiny_t5(t, d_model=32, layers=1, heads=2, d_ff=64)),
                                ('llama', 'llama', lambda t: tiny_causal(t, d_model=32, layers=1, heads=2, d_ff=64)),
                                ('qwen2', 'qwen', lambda t: tiny_causal(t, d_model=32, layers=1, heads=2, d_ff=64, arch='qwen2'))):
        tok = train_tokenizer(TOY_SENTENCES, vocab_size=80, kind='wordlevel', layout=layout)
        llms[name] = build(tok); llms[name].save_pretrained(d / name); tok.save_pretrained(d / name)
    return dict(dir=d, clip=clip.eval(), mae=mae.eval(), **llms)


@pytest.fixture(scope='module')
def frames():
    return np.random.default_rng(0).integers(0, 256, (6, 40, 48, 3), dtype=np.uint8)


@pytest.mark.parametrize('recipe', ['spamo', 'official'])
def test_clip_model_folder_gives_its_vision_tower(hub, frames, recipe):
    "openai/clip-vit-large-patch14's layout: a whole CLIPModel (text tower included) and its preprocessor_config.json."
    folder = hub['dir'] / 'clip'
    assert _arch(folder) == ['CLIPModel']
    se = SpatialEncoder.from_name(str(folder), recipe=recipe)
    model, saved = se.backbone.model, hub['clip'].vision_model
    assert type(model).__name__ == 'CLIPVisionModel' and (se.width, se.dim, se.image_size, se.weights) == (32, 64, 32, str(folder))
    state = getattr(model, 'vision_model', model).state_dict()        # transformers 4.x nests the tower in .vision_model
    assert state.keys() == saved.state_dict().keys()
    assert all(torch.equal(v, state[k]) for k, v in saved.state_dict().items())   # every vision weight, as saved
    if recipe == 'official':
        from transformers import CLIPImageProcessor
        assert se.processing == ImageProcessing.from_processor(CLIPImageProcessor.from_pretrained(folder))
    z = se.encode(frames)
    assert z.shape == (6, 64)
    x = s2_images(se, as_frames(frames))[0]                            # the scale-1 crops, as the encoder read them
    with torch.no_grad():
        out = saved(pixel_values=x, output_hidden_states=True)
    ref = out.hidden_states[-1][:, 0] if recipe == 'official' else out.pooler_output
    torch.testing.assert_close(z[:, :32], ref, atol=1e-5, rtol=1e-4)   # the saved CLIPModel's own vision features


def test_configs_and_image_model_folders_keep_working(hub, tmp_path):
    "A whole CLIPConfig builds its vision tower (random weights); CLIP vision and DINOv2 folders and configs load as before."
    import transformers as tf
    se = SpatialEncoder.from_name(hub['clip'].config)
    assert type(se.backbone.model).__name__ == 'CLIPVisionModel' and se.dim == 64
    for cfg in (tf.CLIPVisionConfig(image_size=32, patch_size=8, **TINY), tf.Dinov2Config(image_size=32, patch_size=8, **TINY),
                tf.Dinov2WithRegistersConfig(image_size=32, patch_size=8, **TINY)):
        assert cfg.model_type in IMAGE_MODELS
        model = tf.AutoModel.from_config(cfg); model.save_pretrained(tmp_path / cfg.model_type)
        se = SpatialEncoder.from_name(str(tmp_path / cfg.model_type), image_size=32)
        assert type(se.backbone.model) is type(model) and se.encode(np.zeros((2, 32, 32, 3), np.uint8)).shape == (2, 64)
        assert all(torch.equal(v, se.backbone.model.state_dict()[k]) for k, v in model.state_dict().items())
        assert SpatialEncoder.from_name(cfg, image_size=32).dim == 64


@pytest.mark.parametrize('recipe', ['spamo', 'official'])
def test_videomae_pretraining_folder_gives_its_encoder(hub, frames, recipe):
    "MCG-NJU/videomae-large's layout: a VideoMAEForPreTraining (encoder, decoder, mask token) and its preprocessor_config.json."
    folder = hub['dir'] / 'mae'
    assert _arch(folder) == ['VideoMAEForPreTraining']
    me = MotionEncoder.from_name(str(folder), stride=2, recipe=recipe)
    saved = hub['mae'].videomae
    assert type(me.backbone.model).__name__ == 'VideoMAEModel' and (me.dim, me.clip_len, me.weights) == (32, 4, str(folder))
    state = me.backbone.model.state_dict()
    assert state.keys() == saved.state_dict().keys() and all(torch.equal(v, state[k]) for k, v in saved.state_dict().items())
    z = me.encode(frames)
    assert z.shape == (len(me.windows(6)), 32)
    x, official = as_frames(frames), recipe == 'official'
    y = process_images(x, me.processing) if official else normalize(resize_crop(x, 32), me.mean, me.std)
    with torch.no_grad(): out = saved(pixel_values=y[clip_indices(6, 4, 2, official)], output_hidden_states=True)
    ref = out.hidden_states[-1][:, 0] if official else out.last_hidden_state[:, 0]   # before / after the final LayerNorm
    torch.testing.assert_close(z, ref, atol=1e-5, rtol=1e-4)           # the saved encoder's own features


@pytest.mark.parametrize('name, family', [('t5', 'seq2seq'), ('llama', 'causal'), ('qwen2', 'causal')])
def test_llm_folders_load_through_build_model(hub, name, family):
    "google/flan-t5-xl (T5ForConditionalGeneration), Llama and Qwen2.5 (...ForCausalLM) load as `build_model` loads them."
    folder, saved = hub['dir'] / name, hub[name]
    assert _arch(folder) == [type(saved).__name__]
    llm, tok = load_llm(str(folder), dtype=torch.float32, lora=False, family=family)
    assert type(llm) is type(saved) and all(torch.equal(v, llm.state_dict()[k]) for k, v in saved.state_dict().items())
    m = build_model(ModelConfig(llm=str(folder), llm_family=family, llm_dtype='fp32', adapter_hidden=16, num_examples=0), 64, 32)
    assert llm_width(m.llm) == 32 and m.adapter.spatial_proj.in_features == 64
    base = m.llm.get_base_model()
    assert torch.equal(base.get_input_embeddings().weight, saved.get_input_embeddings().weight)


@pytest.mark.parametrize('encoder, other, holds', [
    ('spatial', 'bert', "BertModel (model_type 'bert')"),
    ('spatial', 'clip-text', "CLIPTextModel (model_type 'clip_text_model')"),
    ('spatial', 'mae', "VideoMAEForPreTraining (model_type 'videomae')"),
    ('motion', 'bert', "BertModel (model_type 'bert')"),
    ('motion', 'clip', "CLIPModel (model_type 'clip')")])
def test_folders_of_another_kind_are_refused(hub, encoder, other, holds):
    folder = str(hub['dir'] / other)
    build = SpatialEncoder.from_name if encoder == 'spatial' else MotionEncoder.from_name
    with pytest.raises(ValueError) as e: build(folder)
    msg = str(e.value)
    assert f'{folder!r} holds a {holds}; expected for the {encoder} encoder' in msg
    assert ("whole CLIPModel" if encoder == 'spatial' else "VideoMAEForPreTraining") in msg


def test_a_checkpoint_without_the_vision_weights_is_refused(hub, tmp_path):
    "A CLIPModel folder whose checkpoint lacks the vision tower's weights: refused, not loaded with random weights."
    from safetensors.torch import load_file, save_file
    import shutil
    folder = tmp_path / 'text-only-weights'; shutil.copytree(hub['dir'] / 'clip', folder)
    w = load_file(folder / 'model.safetensors')
    save_file({k: v for k, v in w.items() if 'vision_model' not in k}, folder / 'model.safetensors', metadata={'format': 'pt'})
    with pytest.raises(ValueError, match=r"has no weights for \d+ tensors of the spatial encoder \(CLIPVisionModel\)"):
        SpatialEncoder.from_name(str(folder))


@pytest.mark.parametrize('name, wrong, right', [('llama', 'seq2seq', 'causal'), ('qwen2', 'seq2seq', 'causal'), ('t5', 'causal', 'seq2seq')])
def test_an_llm_under_the_wrong_family_names_the_right_one(hub, name, wrong, right):
    "A Llama folder loaded as llm_family seq2seq (or a T5 as causal) is refused naming the family that loads it."
    folder = str(hub['dir'] / name)
    with pytest.raises(ValueError, match=f"{re.escape(repr(folder))} holds a {type(hub[name]).__name__} .*not a '{wrong}' LLM: set llm_family: {right}"):
        load_llm(folder, dtype=torch.float32, lora=False, family=wrong)
