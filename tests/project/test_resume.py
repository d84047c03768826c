import numpy
import spacy
from spacy.tokens import DocBin

from spacy_cmllm.pipeline.model import get_backbone
from tests.scripts import ROOT, load_script
from tests.tiny import build_pipeline, save_tiny_decoder, train, train_examples


def load_project_script(name):
    return load_script(ROOT / "scripts" / f"{name}.py", f"{name}_script")


def lora_state(nlp):
    decoder = get_backbone(nlp.get_pipe("transformer").model).decoder
    return {k: v.detach().clone().numpy() for k, v in decoder.named_parameters() if "lora_" in k}


def test_resume_continues_from_the_checkpoint(tmp_path, byte_level_tokenizer):
    resume = load_project_script("resume")
    model_dir = save_tiny_decoder(tmp_path / "tiny", byte_level_tokenizer, n_layers=2)
    nlp = build_pipeline(model_dir, unmask="01")
    train(nlp, steps=3)
    checkpoint = tmp_path / "model-last"
    nlp.to_disk(checkpoint)
    corpus = tmp_path / "train.spacy"
    DocBin(docs=[eg.reference for eg in train_examples(nlp)]).to_disk(corpus)

    args = ["--steps", "2", "--paths.train", str(corpus), "--paths.dev", str(corpus), "--training.eval_frequency", "1"]
    # With a zero learning rate the resumed run must hold exactly the checkpoint's weights:
    # the adapters and heads come from the checkpoint, not from a fresh initialization.
    resume.main([str(checkpoint), str(tmp_path / "frozen"), *args, "--training.optimizer.learn_rate", "0"])
    frozen = spacy.load(tmp_path / "frozen" / "model-last")
    before, same = lora_state(nlp), lora_state(frozen)
    assert before.keys() == same.keys()
    assert all(numpy.array_equal(before[k], same[k]) for k in before)
    assert any(numpy.abs(before[k]).max() > 0 for k in before if "lora_B" in k)  # trained adapters
    assert frozen.get_pipe("tagger").labels == nlp.get_pipe("tagger").labels
    numpy.testing.assert_array_equal(
        frozen.get_pipe("tagger").model.get_ref("softmax").get_param("W"),
        nlp.get_pipe("tagger").model.get_ref("softmax").get_param("W"),
    )
    # With a learning rate it trains on from there.
    resume.main([str(checkpoint), str(tmp_path / "resumed"), *args])
    after = lora_state(spacy.load(tmp_path / "resumed" / "model-last"))
    assert any(not numpy.array_equal(before[k], after[k]) for k in before)
