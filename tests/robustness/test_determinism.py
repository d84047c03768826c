"""Same seed, same data: same trained weights and predictions on CPU."""

import numpy
import torch

from spacy_cmllm.pipeline.model import get_backbone
from tests.tiny import build_pipeline, save_tiny_decoder, train

TEXT = "Mary visited Paris with Acme Corp yesterday ."


def run(model_dir, seed):
    nlp = build_pipeline(
        model_dir, unmask="01", lora={"r": 4, "alpha": 4.0, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}
    )
    train(nlp, steps=6, seed=seed)
    state = {
        k: v.detach().clone()
        for k, v in get_backbone(nlp.get_pipe("transformer").model).decoder.named_parameters()
        if "lora_" in k
    }
    doc = nlp(TEXT)
    return (
        state,
        [t.tag_ for t in doc],
        doc._.trf_data.model_output.last_hidden_state.copy(),
        nlp.get_pipe("tagger").model.get_ref("softmax").get_param("W").copy(),
    )


def test_same_seed_same_result(tmp_path, byte_level_tokenizer):
    model_dir = save_tiny_decoder(tmp_path / "tiny", byte_level_tokenizer, n_layers=2)
    a, b, c = run(model_dir, 0), run(model_dir, 0), run(model_dir, 1)
    assert a[0].keys() == b[0].keys()
    assert all(torch.equal(a[0][k], b[0][k]) for k in a[0])
    assert a[1] == b[1]
    numpy.testing.assert_array_equal(a[2], b[2])
    numpy.testing.assert_array_equal(a[3], b[3])
    # And the seed matters (LoRA init, dropout), so the test above can fail.
    assert not all(torch.equal(a[0][k], c[0][k]) for k in a[0])
