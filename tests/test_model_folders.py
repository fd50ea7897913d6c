"""Model folders a user names (`--spatial`, `--motion`, `--llm`, the run config's): a folder whose weights do not fit
its config, lack tensors or are cut short, a folder without config.json, of another architecture, with code of its own
(`auto_map`) or with a pickle that would run code is refused with a `ModelFolderError` (a ValueError) naming the folder
and what is wrong: never a raw transformers traceback, never random weights, never code from the folder run."""
import json, os, shutil
import pytest, torch
from safetensors.torch import load_file, save_file
from spamo.registry import ModelFolderError
from spamo.spatial import SpatialEncoder
from spamo.motion import MotionEncoder
from spamo.llm import load_llm
from spamo.cli import main
from spamo.testing import TOY_SENTENCES, train_tokenizer, tiny_t5, toy_manifest

torch.set_num_threads(1)
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
WHAT = dict(spatial='spatial encoder', motion='motion encoder', llm='LLM')
WIDTH = {'clip': ('vision_config', 'hidden_size'), 'clip-vision': (None, 'hidden_size'), 'mae': (None, 'hidden_size'), 't5': (None, 'd_model')}
MISSING = {'clip': 'vision_model.post_layernorm.bias', 'clip-vision': 'post_layernorm.bias',  # as each checkpoint names it
           'mae': 'videomae.encoder.layer.0.output.dense.bias', 't5': 'encoder.final_layer_norm.weight'}
KINDS = [('spatial', 'clip'), ('spatial', 'clip-vision'), ('motion', 'mae'), ('llm', 't5')]


class Evil:
    "A pickled object that runs a shell command when unpickled: what a hostile pytorch_model.bin holds."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    "Sound tiny folders as the hub lays them out: a whole CLIPModel, a CLIPVisionModel, a VideoMAEForPreTraining, a T5 and its tokenizer."
    import transformers as tf
    d = tmp_path_factory.mktemp('saved')
    torch.manual_seed(0)
    tf.CLIPModel(tf.CLIPConfig(text_config=dict(TINY, vocab_size=64, bos_token_id=0, eos_token_id=1, pad_token_id=1),
                               vision_config=dict(TINY, image_size=32, patch_size=8), projection_dim=16)).save_pretrained(d / 'clip')
    tf.CLIPVisionModel(tf.CLIPVisionConfig(image_size=32, patch_size=8, **TINY)).save_pretrained(d / 'clip-vision')
    tf.VideoMAEForPreTraining(tf.VideoMAEConfig(image_size=32, patch_size=16, num_frames=4, tubelet_size=2, decoder_hidden_size=16,
                                                decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=32,
                                                **TINY)).save_pretrained(d / 'mae')
    tok = train_tokenizer(TOY_SENTENCES, vocab_size=80, kind='wordlevel', layout='t5')
    tiny_t5(tok, d_model=32, layers=1, heads=2, d_ff=64).save_pretrained(d / 't5'); tok.save_pretrained(d / 't5')
    return d


def load(kind, folder):
    "Load `folder` through the door a user takes for `kind`."
    folder = str(folder)
    if kind == 'spatial': return SpatialEncoder.from_name(folder)
    if kind == 'motion': return MotionEncoder.from_name(folder, stride=2)
    return load_llm(folder, dtype=torch.float32, lora=False)


def refused(kind, folder, *what) -> str:
    "The message of the `ModelFolderError` (a ValueError) loading `folder` as `kind` raises; it names the folder and `what`."
    with pytest.raises(ValueError) as e: load(kind, folder)
    msg = str(e.value)
    assert isinstance(e.value, ModelFolderError), (type(e.value), msg)
    assert repr(str(folder)) in msg, msg
    for w in what: assert w in msg, msg
    return msg


def copy(saved, name, tmp_path):
    return shutil.copytree(saved / name, tmp_path / name)


def edit_json(folder, file, **changes):
    f = folder / file
    f.write_text(json.dumps(json.loads(f.read_text()) | changes))


@pytest.mark.parametrize('kind, name', KINDS)
def test_sound_folders_load_with_their_weights(saved, kind, name):
    m = load(kind, saved / name)
    model = m[0] if kind == 'llm' else m.backbone.model
    w = load_file(saved / name / 'model.safetensors')
    state = model.state_dict()
    got = {k: v for k, v in state.items() if k in w or f'vision_model.{k}' in w or f'videomae.{k}' in w}
    assert got and all(torch.equal(v, w.get(k, w.get(f'vision_model.{k}', w.get(f'videomae.{k}')))) for k, v in got.items())


@pytest.mark.parametrize('kind, name', KINDS)
def test_weights_that_do_not_fit_the_config_are_refused(saved, tmp_path, kind, name):
    "config.json says width 48, the weights are 32 wide: transformers would raise a RuntimeError after a table."
    f = copy(saved, name, tmp_path)
    sub, key = WIDTH[name]
    cfg = json.loads((f / 'config.json').read_text())
    (cfg[sub] if sub else cfg)[key] = 48
    (f / 'config.json').write_text(json.dumps(cfg))
    msg = refused(kind, f, f'tensors of its weights do not fit its config.json as the {WHAT[kind]}', 'in the weights but')
    assert '32' in msg and '48' in msg


@pytest.mark.parametrize('kind, name', KINDS)
def test_a_missing_tensor_is_refused_not_left_random(saved, tmp_path, kind, name):
    f = copy(saved, name, tmp_path)
    w = load_file(f / 'model.safetensors')
    del w[MISSING[name]]
    save_file(w, f / 'model.safetensors', metadata={'format': 'pt'})
    refused(kind, f, f'has no weights for 1 tensors of the {WHAT[kind]}', MISSING[name].removeprefix('vision_model.').removeprefix('videomae.'))


@pytest.mark.parametrize('kind, name', KINDS)
def test_a_truncated_safetensors_file_is_refused(saved, tmp_path, kind, name):
    f = copy(saved, name, tmp_path)
    b = (f / 'model.safetensors').read_bytes()
    (f / 'model.safetensors').write_bytes(b[:len(b) // 2])
    refused(kind, f, f'cannot load its weights as the {WHAT[kind]}', 'SafetensorError')


@pytest.mark.parametrize('kind, name', KINDS)
def test_a_folder_without_config_json_is_refused(saved, tmp_path, kind, name):
    f = copy(saved, name, tmp_path)
    (f / 'config.json').unlink()
    refused(kind, f, 'has no config.json: not a model folder written by save_pretrained', WHAT[kind])


@pytest.mark.parametrize('kind, name', KINDS)
def test_auto_map_in_config_json_is_refused_and_its_code_never_runs(saved, tmp_path, kind, name):
    f = copy(saved, name, tmp_path)
    marker = tmp_path / 'code-ran'
    (f / 'modeling_evil.py').write_text(f'open({str(marker)!r}, "w").close()\n')
    edit_json(f, 'config.json', auto_map={'AutoConfig': 'modeling_evil.EvilConfig', 'AutoModel': 'modeling_evil.EvilModel'})
    refused(kind, f, 'config.json has auto_map (AutoConfig, AutoModel)', 'spamo never runs code from a model folder')
    assert not marker.exists()


@pytest.mark.parametrize('kind, name', KINDS)
def test_a_model_type_transformers_does_not_know_is_refused(saved, tmp_path, kind, name):
    f = copy(saved, name, tmp_path)
    edit_json(f, 'config.json', model_type='evil_model')
    refused(kind, f, "config.json has model_type 'evil_model', which transformers", 'spamo never runs code from a model folder')


def test_auto_map_in_tokenizer_config_is_refused(saved, tmp_path):
    "A tokenizer can ask for code too; transformers would quietly build a tokenizer of its own instead."
    f = copy(saved, 't5', tmp_path)
    edit_json(f, 'tokenizer_config.json', auto_map={'AutoTokenizer': ['tokenization_evil.EvilTokenizer', None]})
    refused('llm', f, 'tokenizer_config.json has auto_map (AutoTokenizer', 'spamo never runs code from a model folder')


@pytest.mark.parametrize('kind, other, holds', [
    ('spatial', 't5', "holds a T5ForConditionalGeneration (model_type 't5'); expected for the spatial encoder"),
    ('motion', 't5', "holds a T5ForConditionalGeneration (model_type 't5'); expected for the motion encoder"),
    ('llm', 'clip', "holds a CLIPModel (model_type 'clip'), not a 'seq2seq' LLM: no LLM family loads it"),
    ('llm', 'mae', "holds a VideoMAEForPreTraining (model_type 'videomae'), not a 'seq2seq' LLM")])
def test_a_folder_of_another_architecture_is_refused_by_name(saved, kind, other, holds):
    with pytest.raises(ValueError) as e: load(kind, saved / other)
    assert f'{str(saved / other)!r} {holds}' in str(e.value)


def _pickled(saved, tmp_path, name, extra) -> 'Path':
    "The folder with its weights as a pytorch_model.bin (no safetensors) that also holds `extra`."
    f = copy(saved, name, tmp_path)
    w = load_file(f / 'model.safetensors'); (f / 'model.safetensors').unlink()
    torch.save(w | extra, f / 'pytorch_model.bin')
    return f


@pytest.mark.parametrize('kind, name', KINDS)
def test_a_malicious_pickle_is_refused_and_never_runs(saved, tmp_path, kind, name):
    marker = tmp_path / 'pwned'
    f = _pickled(saved, tmp_path, name, {'x': Evil(marker)})
    refused(kind, f, "pytorch_model.bin does not load through torch's allowlist", 'unsupported GLOBAL', 'system', 'save the weights as safetensors')
    assert not marker.exists()
    torch.load(f / 'pytorch_model.bin', weights_only=False)     # what an unguarded unpickling does: the command runs (a `touch`)
    assert marker.exists()


@pytest.mark.parametrize('kind, name', [('spatial', 'clip'), ('llm', 't5')])
def test_a_pickle_of_plain_tensors_loads(saved, tmp_path, kind, name):
    "weights_only=True (torch's allowlist) passes a .bin of tensors, so such folders still load, with their weights."
    f = _pickled(saved, tmp_path, name, {})
    m = load(kind, f)
    model = m[0] if kind == 'llm' else m.backbone.model
    ref = load(kind, saved / name)
    ref = ref[0] if kind == 'llm' else ref.backbone.model
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in ref.state_dict().items())


@pytest.mark.parametrize('option, name', [('--spatial', 'clip'), ('--motion', 'mae')])
def test_spamo_extract_exits_2_naming_the_folder(saved, tmp_path, capsys, option, name):
    f = copy(saved, name, tmp_path)
    w = load_file(f / 'model.safetensors')
    save_file({k: v for k, v in w.items() if k != MISSING[name]}, f / 'model.safetensors', metadata={'format': 'pt'})
    manifest = toy_manifest(tmp_path / 'data', lengths=(4,), size=32)
    other = ['--motion', 'tiny'] if option == '--spatial' else ['--spatial', 'tiny']
    code = main(['extract', '--dataset', 'manifest', '--root', str(manifest), '--out', str(tmp_path / 'store'), '--recipe', 'spamo',
                 option, str(f), *other, '--no-progress'])
    err = capsys.readouterr().err
    assert code == 2 and f'spamo extract: {str(f)!r} has no weights for 1 tensors' in err, err
    assert 'Traceback' not in err and not list(tmp_path.glob('store/**/*.safetensors'))   # refused before any feature is written
