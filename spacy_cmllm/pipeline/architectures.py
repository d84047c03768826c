"""Registered, versioned builders: the only module that touches spaCy's registry.

A published version's signature never changes; a new behaviour gets a new version.
"""

from collections.abc import Callable
from typing import Any

from spacy.language import Language
from spacy.util import registry

from ..decoder.adapter_optimizer import AdapterOptimizer
from ..decoder.backbone import BackboneSettings
from ..decoder.smoothing import DEFAULT_ALPHA
from ..errors import CmllmError, Errors
from .bio_tagger import DEFAULT_MODEL, BIOTagger, build_bio_tagger_model
from .model import build_model
from .types import BIOTaggerModelT, CausalMaskModelT, ListenerModelT, PoolingModelT, Tok2VecModelT

# v1-v3's default adapters: attention only. Kept: their configs mean what they meant.
DEFAULT_LORA: dict[str, Any] = {
    "r": 16,
    "alpha": 32.0,
    "dropout": 0.05,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
}
# v4's: the shipped recipe (configs/default.cfg). Adapters on the MLP as well gained about
# 2 test F1 on CoNLL-2003 within one epoch; dropout's random masks cost a tenth of a CPU step.
RECIPE_LORA: dict[str, Any] = {
    "r": 16,
    "alpha": 32.0,
    "dropout": 0.0,
    "target_modules": "all-linear",
}


@registry.architectures("spacy-cmllm.CausalMaskLLM.v1")
def build_causal_mask_llm_v1(
    *,
    name: str,
    # int is accepted only to explain E005: a CLI override turns "0011" into 11.
    unmask: str | list[int] | int = "0000",
    dtype: str = "float32",
    quantization: str | None = None,
    attn_implementation: str = "sdpa",
    lora: dict[str, Any] | None = DEFAULT_LORA,
    window: int = 128,
    stride: int = 96,
    hidden_layers: list[int] = [-1],
    add_bos: bool = True,
    max_batch_pieces: int = 4096,
    mixed_precision: bool | None = None,
    device: str | None = None,
    gradient_checkpointing: bool = False,
    embed_base: bool = False,
) -> CausalMaskModelT:
    """As v2, with the adapters stepped by the training's thinc optimizer (one learning rate
    for adapters and heads, clipping per tensor)."""
    return build_causal_mask_llm_v2(
        name=name,
        unmask=unmask,
        dtype=dtype,
        quantization=quantization,
        attn_implementation=attn_implementation,
        lora=lora,
        window=window,
        stride=stride,
        hidden_layers=hidden_layers,
        add_bos=add_bos,
        max_batch_pieces=max_batch_pieces,
        mixed_precision=mixed_precision,
        device=device,
        gradient_checkpointing=gradient_checkpointing,
        embed_base=embed_base,
        adapter_optimizer=None,
    )


@registry.architectures("spacy-cmllm.CausalMaskLLM.v2")
def build_causal_mask_llm_v2(
    *,
    name: str,
    # int is accepted only to explain E005: a CLI override turns "0011" into 11.
    unmask: str | list[int] | int = "0000",
    dtype: str = "float32",
    quantization: str | None = None,
    attn_implementation: str = "sdpa",
    lora: dict[str, Any] | None = DEFAULT_LORA,
    window: int = 128,
    stride: int = 96,
    hidden_layers: list[int] = [-1],
    add_bos: bool = True,
    max_batch_pieces: int = 4096,
    mixed_precision: bool | None = None,
    device: str | None = None,
    gradient_checkpointing: bool = False,
    embed_base: bool = False,
    adapter_optimizer: AdapterOptimizer | None = None,
) -> CausalMaskModelT:
    """As v3 with pack = false (every window its own row) and int8 = false."""
    return build_causal_mask_llm_v3(
        name=name,
        unmask=unmask,
        dtype=dtype,
        quantization=quantization,
        attn_implementation=attn_implementation,
        lora=lora,
        window=window,
        stride=stride,
        hidden_layers=hidden_layers,
        add_bos=add_bos,
        max_batch_pieces=max_batch_pieces,
        mixed_precision=mixed_precision,
        device=device,
        gradient_checkpointing=gradient_checkpointing,
        embed_base=embed_base,
        adapter_optimizer=adapter_optimizer,
        pack=False,
        int8=False,
    )


@registry.architectures("spacy-cmllm.CausalMaskLLM.v3")
def build_causal_mask_llm_v3(
    *,
    name: str,
    # int is accepted only to explain E005: a CLI override turns "0011" into 11.
    unmask: str | list[int] | int = "0000",
    dtype: str = "float32",
    quantization: str | None = None,
    attn_implementation: str = "sdpa",
    lora: dict[str, Any] | None = DEFAULT_LORA,
    window: int = 128,
    stride: int = 96,
    hidden_layers: list[int] = [-1],
    add_bos: bool = True,
    max_batch_pieces: int = 4096,
    mixed_precision: bool | None = None,
    device: str | None = None,
    gradient_checkpointing: bool = False,
    embed_base: bool = False,
    adapter_optimizer: AdapterOptimizer | None = None,
    pack: bool = True,
    int8: bool = False,
    int8_smoothing: float = DEFAULT_ALPHA,
) -> CausalMaskModelT:
    """As v4 with repeat = 1, window 128 / stride 96 by default, and adapters on attention
    only by default (q/k/v/o_proj, dropout 0.05)."""
    return build_causal_mask_llm_v4(
        name=name,
        unmask=unmask,
        dtype=dtype,
        quantization=quantization,
        attn_implementation=attn_implementation,
        lora=lora,
        window=window,
        stride=stride,
        hidden_layers=hidden_layers,
        add_bos=add_bos,
        max_batch_pieces=max_batch_pieces,
        mixed_precision=mixed_precision,
        device=device,
        gradient_checkpointing=gradient_checkpointing,
        embed_base=embed_base,
        adapter_optimizer=adapter_optimizer,
        pack=pack,
        int8=int8,
        int8_smoothing=int8_smoothing,
        repeat=1,
    )


@registry.architectures("spacy-cmllm.CausalMaskLLM.v4")
def build_causal_mask_llm_v4(
    *,
    name: str,
    # int is accepted only to explain E005: a CLI override turns "0011" into 11.
    unmask: str | list[int] | int = "0000",
    dtype: str = "float32",
    quantization: str | None = None,
    attn_implementation: str = "sdpa",
    lora: dict[str, Any] | None = RECIPE_LORA,
    window: int = 256,
    stride: int = 192,
    hidden_layers: list[int] = [-1],
    add_bos: bool = True,
    max_batch_pieces: int = 4096,
    mixed_precision: bool | None = None,
    device: str | None = None,
    gradient_checkpointing: bool = False,
    embed_base: bool = False,
    adapter_optimizer: AdapterOptimizer | None = None,
    pack: bool = True,
    int8: bool = False,
    int8_smoothing: float = DEFAULT_ALPHA,
    repeat: int = 1,
) -> CausalMaskModelT:
    """A partly unmasked, LoRA-adapted decoder as the model of spacy-transformers'
    ``transformer`` component; ``TransformerListener.v1`` layers read its output.

    name (str): the base decoder: hub name, local directory, .gguf file, or
        "package:<module>/<file>" for a model shipped inside a Python package.
    unmask (str | List[int]): group string, leftmost = input side ("0011"), or layer indices.
    dtype (str): "float32", "bfloat16" or "float16" for the base weights.
    quantization (Optional[str]): None or "4bit" (QLoRA; CUDA and bitsandbytes).
    attn_implementation (str): "sdpa" or "eager".
    lora (Optional[Dict]): r, alpha, dropout, target_modules; null freezes the decoder.
        Default: the recipe's adapters, r 16 and alpha 32 on every linear layer of the
        blocks ("all-linear"), dropout 0.
    window (int): pieces per window over long documents (BOS excluded). In training, docs
        are cut into consecutive windows (at sentence starts where the doc has them), so
        every piece is computed once.
    stride (int): pieces between window starts in prediction; each piece's vector is read
        from the window in which it has the most context on both sides.
    hidden_layers (List[int]): which hidden states feed the listeners, as indices into
        (embeddings, layer 1, ..., last layer with final norm); several are averaged.
        [-1] is the final output. The decoder runs only up to the highest state read
        (early exit): [20] on a 30-layer model computes 20 layers, in training too.
    add_bos (bool): start every window with the BOS token, an attention sink never labelled.
    max_batch_pieces (int): bound on padded pieces per decoder call; keeps memory flat.
    mixed_precision (Optional[bool]): bfloat16 autocast around the decoder; null = where
        the hardware has native bf16 (CUDA with bf16, CPUs with AVX512-BF16 or AMX).
    device (Optional[str]): torch device of the decoder; default CUDA when available.
    gradient_checkpointing (bool): trade compute for activation memory in training.
    embed_base (bool): save the base weights inside the pipeline (small models only).
    adapter_optimizer (Optional[AdapterOptimizer]): the adapters' own optimizer
        (spacy-cmllm.AdapterOptimizer.v1: AdamW, warm-up + decay, global clipping); the
        heads keep [training.optimizer]. null: the adapters use [training.optimizer] too.
    pack (bool): let several short windows share one row of a decoder call, each attending
        only to itself (its own BOS sink, positions restarting at 0): the same vectors as
        alone, without padding every row to the longest doc. In prediction and training.
        Needs attn_implementation "sdpa" or "eager" (E075).
    int8 (bool): predict with a copy of the decoder whose adapters are merged and whose
        block linear layers run in int8 (per-channel weights, per-token activations, an
        exact int8 matrix product; CPU only, no autocast).
        Prediction only: nlp.update stops with E076. Can be switched at spacy.load.
    int8_smoothing (float): SmoothQuant's alpha for the int8 copy: the share of each
        activation channel's range moved into the weights, measured on a fixed
        calibration text (0 = plain int8). Can be switched at spacy.load.
    repeat (int): sequence repetition (Kukić et al., 2025): each window's pieces follow its
        BOS `repeat` times in one decoder sequence, and every piece is read from its last
        copy, which has seen the whole window even through causal layers. 1 = no
        repetition. `window`, `stride` count one copy; the decoder sees repeat x window
        (+ BOS) positions, and max_batch_pieces counts all of them. Saved with the pipeline
        (E091 on a mismatch at load); a sliding window that cannot reach the first copy is
        refused (E090).
    """
    for key, value in (("pack", pack), ("int8", int8)):
        if not isinstance(value, bool):
            raise CmllmError(Errors.E079.format(name=key, value=value, why="must be true or false"))
    if isinstance(int8_smoothing, bool) or not isinstance(int8_smoothing, (int, float)) or not 0 <= int8_smoothing <= 1:
        raise CmllmError(
            Errors.E079.format(name="int8_smoothing", value=int8_smoothing, why="must be a number from 0 to 1")
        )
    if int8 and quantization is not None:
        raise CmllmError(Errors.E077.format(why=f"quantization={quantization!r} already quantizes the base"))
    for key, number, minimum in (
        ("window", window, 1),
        ("stride", stride, 1),
        ("max_batch_pieces", max_batch_pieces, 1),
    ):
        if isinstance(number, bool) or not isinstance(number, int) or number < minimum:
            raise CmllmError(Errors.E040.format(name=key, value=number, why=f"must be an integer >= {minimum}"))
    if stride > window:
        raise CmllmError(
            Errors.E040.format(
                name="stride", value=stride, why=f"must not exceed window={window}, or pieces would be skipped"
            )
        )
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise CmllmError(
            Errors.E040.format(name="repeat", value=repeat, why="must be an integer >= 1 (1 = no repetition)")
        )
    if not hidden_layers or not all(isinstance(i, int) and not isinstance(i, bool) for i in hidden_layers):
        raise CmllmError(
            Errors.E040.format(
                name="hidden_layers", value=hidden_layers, why="give a non-empty list of integers, e.g. [-1]"
            )
        )
    settings = BackboneSettings.from_dict(
        {
            "name": name,
            "unmask": unmask,
            "dtype": dtype,
            "quantization": quantization,
            "attn_implementation": attn_implementation,
            "lora": lora,
            "device": device,
            "gradient_checkpointing": gradient_checkpointing,
            "embed_base": embed_base,
        }
    )
    return build_model(
        settings,
        window=window,
        stride=stride,
        hidden_layers=hidden_layers,
        add_bos=add_bos,
        max_batch_pieces=max_batch_pieces,
        mixed_precision=mixed_precision,
        adapter_optimizer=adapter_optimizer,
        pack=pack,
        int8=int8,
        int8_smoothing=float(int8_smoothing),
        repeat=repeat,
    )


@registry.misc("spacy-cmllm.AdapterOptimizer.v1")
def make_adapter_optimizer_v1(
    *,
    learn_rate: float = 2e-4,
    total_steps: int = 0,
    warmup: float = 0.1,
    schedule: str = "cosine",
    min_rate: float = 0.0,
    beta1: float = 0.9,
    beta2: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.1,
    grad_clip: float = 1.0,
) -> AdapterOptimizer:
    """AdamW for the decoder's adapters, with its own schedule and global-norm clipping
    (the paper's and peft's setting: 2e-4, betas 0.9/0.95, weight decay 0.1, clip 1.0).

    learn_rate (float): peak rate, reached at the end of the warm-up.
    total_steps (int): steps the schedule spans; use ${training.max_steps}.
    warmup (float): a fraction of total_steps if below 1, else a number of steps.
    schedule (str): "cosine", "linear" or "constant" decay after the warm-up.
    min_rate (float): the rate at total_steps.
    beta1 (float): AdamW's decay rate of the gradients' running mean.
    beta2 (float): AdamW's decay rate of the squared gradients' running mean.
    eps (float): AdamW's term added to the denominator for numerical stability.
    weight_decay (float): AdamW's decoupled weight decay.
    grad_clip (float): bound on the L2 norm of ALL adapter gradients together; 0 = off.
    """
    return AdapterOptimizer(
        learn_rate=learn_rate,
        total_steps=total_steps,
        warmup=warmup,
        schedule=schedule,
        min_rate=min_rate,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
        grad_clip=grad_clip,
    )


@registry.scorers("spacy-cmllm.seqeval_scorer.v1")
def make_seqeval_scorer_v1():
    """spaCy's entity scores plus the paper's metric: seqeval, strict IOB2, micro P/R/F."""
    from .scorer import score_entities

    return score_entities


@registry.scorers("spacy-cmllm.seqeval_spans_scorer.v1")
def make_seqeval_spans_scorer_v1():
    """As seqeval_scorer.v1 for doc.spans[spans_key]: spaCy's spans_{key}_p/r/f/per_type
    plus spans_{key}_seqeval_p/r/f. Called with the keyword argument spans_key."""
    from .scorer import score_spans

    return score_spans


@registry.scorers("spacy-cmllm.bio_scorer.v1")
def make_bio_scorer_v1():
    """The bio_tagger's scorer: seqeval_scorer.v1 when its spans_key is null, else
    seqeval_spans_scorer.v1 for that key."""
    from .scorer import score_bio

    return score_bio


@registry.architectures("spacy-cmllm.BIOTagger.v1")
def build_bio_tagger_v1(
    *,
    tok2vec: Tok2VecModelT,
    nO: int | None = None,
    dropout: float = 0.1,
) -> BIOTaggerModelT:
    """The paper's token-classification head: tok2vec, dropout, softmax over IOB2 classes.

    tok2vec (Model[List[Doc], List[Floats2d]]): token vectors, e.g.
        spacy-transformers.TransformerListener.v1 or spacy.Tok2Vec.v2.
    nO (Optional[int]): the number of IOB2 classes (1 + 2 per label); null = from the labels.
    dropout (float): dropout before the softmax; 0.1 as in the paper. [training] dropout
        does not change it.
    """
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise CmllmError(Errors.E040.format(name="dropout", value=dropout, why="must be a number in [0, 1)"))
    return build_bio_tagger_model(tok2vec, nO=nO, dropout=float(dropout))


@registry.architectures("spacy-cmllm.TransformerListener.v1")
def build_transformer_listener_v1(
    *,
    pooling: PoolingModelT,
    grad_factor: float = 1.0,
    upstream: str = "*",
) -> ListenerModelT:
    """spacy-transformers.TransformerListener.v1 that fails (E101) instead of returning
    zero vectors when a Doc reaches it in prediction without doc._.trf_data, i.e. when
    the transformer component did not run (disabled, or its output already cleaned).

    pooling (Model[Ragged, Floats2d]): how a token's piece vectors become one, e.g.
        reduce_mean.v1.
    grad_factor (float): scale of the gradients passed back to the transformer.
    upstream (str): the transformer component's name, or "*" for any.
    """
    from .listener import build_checked_listener

    return build_checked_listener(pooling=pooling, grad_factor=grad_factor, upstream=upstream)


@Language.factory(
    "bio_tagger",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", "doc.spans"],
    default_config={
        "model": DEFAULT_MODEL,
        "spans_key": None,
        "overwrite": False,
        "scorer": {"@scorers": "spacy-cmllm.bio_scorer.v1"},
    },
    # For spans_key = null; with a key, weight spans_{key}_f in [training.score_weights].
    default_score_weights={
        "ents_f": 1.0,
        "ents_p": 0.0,
        "ents_r": 0.0,
        "ents_seqeval_f": 0.0,
        "ents_per_type": None,
    },
)
def make_bio_tagger(
    nlp: Language,
    name: str,
    model: BIOTaggerModelT,
    spans_key: str | None,
    overwrite: bool,
    scorer: Callable | None,
) -> BIOTagger:
    """The bio_tagger component: IOB2 token classification, constrained Viterbi decoding.

    model (Model[List[Doc], List[Floats2d]]): per-token IOB2 class probabilities, by
        default spacy-cmllm.BIOTagger.v1.
    spans_key (Optional[str]): null: write and learn doc.ents; a key: write
        and learn doc.spans[spans_key], leaving doc.ents alone.
    overwrite (bool): false (as spaCy's ner): entities already in doc.ents (or spans already
        in doc.spans[spans_key]), e.g. from an entity_ruler before this component, are kept
        and new ones are predicted around them; true: they are replaced.
    scorer (Optional[Callable]): called with spans_key; default spacy-cmllm.bio_scorer.v1.
    """
    if spans_key is not None and (not isinstance(spans_key, str) or not spans_key):
        raise CmllmError(
            Errors.E040.format(name="spans_key", value=spans_key, why="give null (doc.ents) or a non-empty string")
        )
    return BIOTagger(nlp.vocab, model, name, spans_key=spans_key, overwrite=overwrite, scorer=scorer)


@registry.misc("spacy-cmllm.pos_patterns_from_corpus.v1")
def make_pos_patterns_from_corpus_v1(*, path: str | None = None, min_count: int = 1) -> list[dict[str, Any]]:
    """attribute_ruler patterns that set token.pos_ from the predicted token.tag_, learnt
    from a corpus: each tag's majority UPOS, and (tag, lower-cased word) exceptions seen at
    least min_count times. For [initialize.components.attribute_ruler.patterns].

    path (Optional[str]): the training corpus (.spacy file or directory), e.g.
        ${paths.train}; null gives no patterns (W110).
    min_count (int): occurrences a (tag, word) exception needs.
    """
    from .pos_rules import pos_patterns_from_corpus

    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise CmllmError(Errors.E040.format(name="min_count", value=min_count, why="must be an integer >= 1"))
    return pos_patterns_from_corpus(path, min_count=min_count)


@registry.loggers("spacy-cmllm.ConsoleLogger.v1")
def make_console_logger_v1(*, progress_bar: bool = True, progress_every: int = 10, console_output: bool = True):
    """spaCy's console logger (its table, and its progress bar on a terminal) that also
    prints a plain progress line every ``progress_every`` steps when stdout is not a
    terminal (logs of `spacy project run`, CI), and explains at the start what the
    learning rates do during the warm-up ("Initial learn rate: 0.0").

    progress_bar (bool): spaCy's progress bar up to the next evaluation (terminal only).
    progress_every (int): steps between plain progress lines off a terminal; 0 = none.
    console_output (bool): print anything at all.
    """
    from .console_logger import console_logger

    if isinstance(progress_every, bool) or not isinstance(progress_every, int) or progress_every < 0:
        raise CmllmError(
            Errors.E040.format(name="progress_every", value=progress_every, why="must be a whole number >= 0")
        )
    return console_logger(progress_bar=progress_bar, progress_every=progress_every, console_output=console_output)
