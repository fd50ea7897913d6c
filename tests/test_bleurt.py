"""spamo.bleurt: a tiny random BLEURT checkpoint (save_pretrained) scores through the path of the real one."""
import pytest
torch = pytest.importorskip('torch')
from spamo.bleurt import BleurtConfig, BleurtForSequenceClassification, load_bleurt, bleurt_sentence_scores
from spamo.metrics import BleurtUnavailable, bleurt_score, evaluate_predictions

HYPS = ['am tag regen', 'im norden sonne und schnee', 'regen']
REFS = ['am tag regen und schnee', 'im norden sonne', 'sonne']


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    words = '[PAD] [UNK] [CLS] [SEP] am tag regen und schnee im norden sonne'.split()
    wl = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token='[UNK]'))
    wl.pre_tokenizer = pre_tokenizers.Whitespace()
    wl.post_processor = processors.TemplateProcessing(single='[CLS] $A [SEP]', pair='[CLS] $A [SEP] $B:1 [SEP]:1',
                                                      special_tokens=[('[CLS]', 2), ('[SEP]', 3)])
    tok = PreTrainedTokenizerFast(tokenizer_object=wl, pad_token='[PAD]', unk_token='[UNK]', cls_token='[CLS]', sep_token='[SEP]')
    torch.manual_seed(0)
    net = BleurtForSequenceClassification(BleurtConfig(vocab_size=16, embedding_size=8, hidden_size=16, num_hidden_layers=2,
                                                       num_attention_heads=2, intermediate_size=32, max_position_embeddings=32))
    with torch.no_grad():
        for p in net.parameters(): p.normal_(std=0.3)
    d = tmp_path_factory.mktemp('bleurt')
    net.save_pretrained(d); tok.save_pretrained(d)
    return str(d)


def test_scores_deterministic_and_batch_independent(checkpoint):
    model, tok = load_bleurt(checkpoint, 'cpu')
    s1, s3 = bleurt_sentence_scores(model, tok, HYPS, REFS, 1), bleurt_sentence_scores(model, tok, HYPS, REFS, 3)
    assert s1 == pytest.approx(s3, abs=1e-5)
    again = bleurt_sentence_scores(*load_bleurt(checkpoint, 'cpu'), HYPS, REFS, 2)
    assert again == pytest.approx(s1, abs=1e-5)
    assert min(abs(s1[0] - s1[1]), abs(s1[0] - s1[2]), abs(s1[1] - s1[2])) > 1e-3, s1  # different pairs score differently
    swapped = bleurt_sentence_scores(model, tok, REFS[:1], HYPS[:1], 1)  # the pair is ordered: (reference, candidate)
    assert abs(swapped[0] - s1[0]) > 1e-4


def test_metrics_use_it(checkpoint):
    model, tok = load_bleurt(checkpoint, 'cpu')
    want = 100 * sum(bleurt_sentence_scores(model, tok, HYPS, REFS)) / 3
    assert bleurt_score(HYPS, REFS, checkpoint, 'cpu') == pytest.approx(want, abs=1e-4)
    m = evaluate_predictions([1, 2, 3], HYPS, REFS, 'de', verbose=False, bleurt=True, bleurt_checkpoint=checkpoint, bleurt_device='cpu')
    assert m['bleurt'] == pytest.approx(want, abs=1e-4) and 'bleurt_error' not in m


def test_missing_checkpoint_says_what(tmp_path):
    with pytest.raises(BleurtUnavailable, match='lucadiliello/BLEURT-20') as e: bleurt_score(['a'], ['a'], str(tmp_path / 'none'))
    assert str(tmp_path / 'none') in str(e.value)
