import torch

from spacy_cmllm.decoder.fingerprint import weights_fingerprint
from spacy_cmllm.decoder.lora import add_lora


def test_same_weights_same_fingerprint(make_decoder):
    assert weights_fingerprint(make_decoder(seed=1)) == weights_fingerprint(make_decoder(seed=1))


def test_other_weights_other_fingerprint(make_decoder):
    base = weights_fingerprint(make_decoder(seed=1))
    assert weights_fingerprint(make_decoder(seed=2)) != base
    assert weights_fingerprint(make_decoder(seed=1).to(torch.bfloat16)) != base
    changed = make_decoder(seed=1)
    with torch.no_grad():
        changed.model.layers[3].mlp.up_proj.weight.mul_(1.01)
    assert weights_fingerprint(changed) != base


def test_adapters_do_not_change_the_base_fingerprint(make_decoder):
    base = weights_fingerprint(make_decoder(seed=1))
    wrapped = add_lora(make_decoder(seed=1), r=2)
    assert weights_fingerprint(wrapped) == base


def test_tensors_larger_than_float32_precision():
    model = torch.nn.Embedding(49152, 576)  # 28,311,552 values, as in SmolLM2's embeddings
    assert len(weights_fingerprint(model)) == 32
