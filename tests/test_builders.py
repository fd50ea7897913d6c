"""Builders: a new spatial encoder and a new connector are one registry entry each, and work end to end."""
import json
import numpy as np, pytest, torch
from torch import nn
import torch.nn.functional as F
from spamo.spatial import SPATIAL, SpatialEncoder, seeded
from spamo.motion import MOTION, MotionEncoder
from spamo.adapter import CONNECTORS, SignAdapter
from spamo.llm import LLM_FAMILIES
from spamo.data import load_dataset, read_sample
from spamo.store import FeatureStore
from spamo.features import extract
from spamo.presets import resolve_config
from spamo.checkpoint import load_run
from spamo.train import train
from spamo.testing import tiny_llm, toy_manifest

torch.set_num_threads(1)


class PooledColour(nn.Module):
    "A toy backbone: a random projection of 4x4 average-pooled pixels."
    width, image_size, patch, mean, std = 24, 32, 8, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    def __init__(self): super().__init__(); self.proj = nn.Linear(3 * 16, 24)
    def forward(self, x): return self.proj(F.adaptive_avg_pool2d(x, 4).flatten(1))


class Gated(nn.Module):
    "A toy connector: a linear value times a sigmoid gate."
    def __init__(self, hidden, llm_dim): super().__init__(); self.value, self.gate = nn.Linear(hidden, llm_dim), nn.Linear(hidden, llm_dim)
    def forward(self, x): return self.value(x) * torch.sigmoid(self.gate(x))


@pytest.fixture
def registered():
    SPATIAL.register('pooled-colour', lambda model, pretrained, seed: seeded(PooledColour, seed))
    CONNECTORS.register('gated', Gated)
    yield
    SPATIAL.entries.pop('pooled-colour'); CONNECTORS.entries.pop('gated')


def test_unknown_names_list_the_known_ones():
    for reg, name in ((SPATIAL, 'ViT-Q-99'), (MOTION, 'vjepa'), (CONNECTORS, 'qformer'), (LLM_FAMILIES, 'diffusion')):
        with pytest.raises(ValueError, match='known: ' + ', '.join(map(repr, reg.names()))): reg[name]
    with pytest.raises(ValueError, match='tiny'): SpatialEncoder.from_name('ViT-Q-99')
    with pytest.raises(ValueError, match='tiny'): MotionEncoder.from_name('vjepa')
    with pytest.raises(ValueError, match='mlp2x_gelu'): SignAdapter(4, 4, 8, connector='qformer')


def test_new_encoder_and_connector_extract_and_train(registered, tmp_path):
    "Register one spatial encoder and one connector; extract a store with them and train one step on it."
    samples = load_dataset('manifest', toy_manifest(tmp_path / 'toy', lengths=(9, 17, 20, 30)), 'train')
    rep = extract(samples, tmp_path / 'features', 'pooled-colour', 'tiny', progress=False, recipe='spamo')
    store = FeatureStore(tmp_path / 'features')
    assert len(rep['extracted']) == 4 and (store.settings['spatial'], store.spatial_dim) == ('pooled-colour', 48)
    ran = store.settings['precision']                                                   # bf16 where the CPU has it, else fp32
    direct = SpatialEncoder.from_name('pooled-colour', recipe='spamo').prepare('cpu', ran).encode(read_sample(samples[1])[0])
    assert torch.allclose(store[samples[1].id]['spatial'], direct, atol=2e-3)          # same dtype; float16 storage
    cfg = resolve_config(dataset='manifest', data_root=str(tmp_path / 'toy' / 'manifest.csv'), features=str(store.path),
                             dev_split='train', llm=str(tiny_llm([s.text for s in samples], tmp_path / 'llm', steps=1)), llm_dtype='fp32', precision='fp32',
                             connector='gated', adapter_hidden=16, num_examples=0, run_dir=str(tmp_path / 'run'),
                             vt_warmup_steps=0, max_steps=1, batch_size=2, lr_warmup_steps=1, eval_every=1, save_every=1,
                             num_beams=1, max_new_tokens=4)
    summary = train(cfg, progress=False)
    assert summary['steps'] == 1 and np.isfinite(summary['last_loss'])
    model, rc = load_run(tmp_path / 'run', 'last')
    assert isinstance(model.adapter.connector, Gated) and rc.model.connector == 'gated'
    assert model.adapter.spatial_proj.in_features == 48
    from safetensors.torch import load_file
    ck = load_file(tmp_path / 'run' / 'checkpoints' / 'last' / 'trainable.safetensors')
    assert torch.equal(ck['adapter.connector.gate.weight'], model.adapter.connector.gate.weight)
