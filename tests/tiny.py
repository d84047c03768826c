"""Tiny random decoders built in-process, the models of the unit tests."""

import torch
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

# Decoder families with the Llama layout, as transformers 4.52-4.53 builds them. Phi-3 fuses
# q/k/v into qkv_proj and gate/up into gate_up_proj; Gemma-2 alternates sliding-window and
# global layers and soft-caps attention logits (applied by the eager kernel only).
FAMILIES = ("llama", "mistral", "qwen2", "gemma2", "phi3")


def tiny_decoder(
    family: str = "llama",
    *,
    n_layers: int = 8,
    attn: str = "sdpa",
    sliding_window=None,
    vocab_size: int = 128,
    hidden_size: int = 64,
    seed: int = 0,
):
    """A randomly initialised *ForCausalLM of one of FAMILIES, with the real architecture,
    in eval mode. ``sliding_window`` applies to Mistral, Qwen2 and Gemma-2 (None: off;
    Gemma-2's default window is kept)."""
    n_heads = 4
    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
        attn_implementation=attn,
    )
    torch.manual_seed(seed)
    model: PreTrainedModel
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    elif family == "mistral":
        model = MistralForCausalLM(MistralConfig(sliding_window=sliding_window, **common))
    elif family == "qwen2":
        window = (
            dict(use_sliding_window=True, sliding_window=sliding_window, max_window_layers=0) if sliding_window else {}
        )
        model = Qwen2ForCausalLM(Qwen2Config(**window, **common))
    elif family == "gemma2":
        window = {"sliding_window": sliding_window} if sliding_window else {}
        head_dim = hidden_size // n_heads
        model = Gemma2ForCausalLM(Gemma2Config(head_dim=head_dim, query_pre_attn_scalar=head_dim, **window, **common))
    elif family == "phi3":
        model = Phi3ForCausalLM(Phi3Config(bos_token_id=1, eos_token_id=2, **common))
    else:
        raise ValueError(f"unknown family {family!r}: choose one of {FAMILIES}")
    return model.eval()


def save_tiny_decoder(path, tokenizer, *, family="llama", **kwargs):
    """Save a tiny random decoder with `tokenizer` in save_pretrained layout; returns str(path)."""
    model = tiny_decoder(family, vocab_size=len(tokenizer), **kwargs)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


LISTENER = {
    "@architectures": "spacy-transformers.TransformerListener.v1",
    "grad_factor": 1.0,
    "pooling": {"@layers": "reduce_mean.v1"},
    "upstream": "*",
}

# Joint POS + NER training examples: (words, tags, BILUO entities).
TRAIN_DATA = [
    (
        "John lives in New York and works for Google .".split(),
        ["NNP", "VBZ", "IN", "NNP", "NNP", "CC", "VBZ", "IN", "NNP", "."],
        ["U-PER", "O", "O", "B-LOC", "L-LOC", "O", "O", "O", "U-ORG", "O"],
    ),
    (
        "Mary visited Paris with Acme Corp yesterday .".split(),
        ["NNP", "VBD", "NNP", "IN", "NNP", "NNP", "NN", "."],
        ["U-PER", "O", "U-LOC", "O", "B-ORG", "L-ORG", "O", "O"],
    ),
]


def build_pipeline(model_dir, **model_config):
    """A blank English pipeline: transformer (CausalMaskLLM.v1) + tagger + ner, as in configs/."""
    import spacy

    arch = {
        "@architectures": "spacy-cmllm.CausalMaskLLM.v1",
        "name": str(model_dir),
        "unmask": "0011",
        # Gentle adapters: on a random tiny decoder, strong LoRA moves the features faster
        # than the heads can follow at the learning rates the tests use.
        "lora": {"r": 4, "alpha": 4.0, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
    }
    arch.update(model_config)
    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config={"model": arch})
    nlp.add_pipe("tagger", config={"model": {"@architectures": "spacy.Tagger.v2", "tok2vec": LISTENER}})
    nlp.add_pipe(
        "ner",
        config={
            "model": {
                "@architectures": "spacy.TransitionBasedParser.v2",
                "state_type": "ner",
                "extra_state_tokens": False,
                "hidden_width": 32,
                "maxout_pieces": 2,
                "use_upper": False,
                "tok2vec": LISTENER,
            },
            "scorer": {"@scorers": "spacy-cmllm.seqeval_scorer.v1"},
        },
    )
    return nlp


def train_examples(nlp):
    from spacy.training import Example

    return [
        Example.from_dict(nlp.make_doc(" ".join(words)), {"words": words, "tags": tags, "entities": ents})
        for words, tags, ents in TRAIN_DATA
    ]


# A UPOS for each tag of TRAIN_DATA, for corpora that carry token.pos_ as EWT does.
UPOS = {"NNP": "PROPN", "VBZ": "VERB", "VBD": "VERB", "IN": "ADP", "CC": "CCONJ", "NN": "NOUN", ".": "PUNCT"}


def save_corpus(path, with_pos=True):
    """TRAIN_DATA (tags, entities and, with_pos, UPOS) as a .spacy file; returns str(path)."""
    import spacy
    from spacy.tokens import DocBin

    docs = []
    for eg in train_examples(spacy.blank("en")):
        doc = eg.reference
        if with_pos:
            for token in doc:
                token.pos_ = UPOS[token.tag_]
        docs.append(doc)
    DocBin(docs=docs).to_disk(path)
    return str(path)


def train(nlp, steps=40, lr=0.003, seed=0):
    """Initialize and train on TRAIN_DATA; returns the list of losses per step."""
    from thinc.api import Adam, fix_random_seed

    fix_random_seed(seed)
    examples = train_examples(nlp)
    nlp.initialize(lambda: examples)
    optimizer = Adam(lr)
    history = []
    for _ in range(steps):
        history.append(nlp.update(examples, sgd=optimizer, losses={}))
    return history
