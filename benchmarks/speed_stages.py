"""The measured stages of the speed benchmark (benchmarks/speed.py says what each compares).

Each stage takes the pipelines it measures, built by ``measure`` as variants of one
initialized pipeline around one shared decoder (pipelines.pipeline_variant): packed or one
window per row, float or int8, at the pipeline's precision or in float32. No stage switches
a setting of a pipeline that another stage uses.
"""

import functools
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import spacy
import torch
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

from spacy_cmllm.corpora import read_conll, read_conllu, sentences_to_docs
from spacy_cmllm.decoder import add_lora, load_decoder, unmask_layers
from spacy_cmllm.decoder.lora import LoraSettings
from spacy_cmllm.decoder.quantize import int8_kernel
from spacy_cmllm.decoder.windows import batch_windows, pad_windows, plan_training_windows, plan_windows
from spacy_cmllm.pipeline.model import TRAIN_MAX_PADDING, get_backbone, int8_decoder, use_bf16_autocast
from spacy_cmllm.provenance import provenance

from . import ROOT, SOURCE
from .decoder_calls import counted_positions, raw_forward, recorded_calls
from .pipelines import pipeline_variant, transformer_of
from .timing import best_of, interleaved, synchronizer

CONLL_TEST = ROOT.parent / "shared" / "data" / "conll2003" / "iob2" / "test.txt"
CONLL_TRAIN = CONLL_TEST.with_name("train.txt")
EWT_TEST = ROOT / "assets" / "ewt" / "test.conllu"
BTC_TEST = ROOT.parent / "shared" / "data" / "broad_twitter_corpus" / "btc.test"
TARGETS = {"inference_vs_raw_hf": 0.90, "unmasked_vs_causal": 0.95, "training_vs_plain_peft": 0.80}
# Packed windows (CausalMaskLLM.v4) against one window per row, same process.
PACKED_MIN_SPEEDUP = 2.0
MAX_PACKED_PADDING_WASTE = 0.05
MAX_PACKED_DIFFERENCE = 1e-4
MAX_TRAIN_POSITIONS_PER_PIECE = 1.05

# (words, tags, IOB2 entities) of one sentence; tags None where the corpus has none (both
# read here have them).
TaggedSentence = tuple[list[str], list[str] | None, list[str]]
# One padded batch of windows on the decoder's device: (input ids, attention mask).
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class SpeedOptions:
    """What to measure, as the command line gives it."""

    words: int = 3000
    repeats: int = 3
    train_steps: int = 3
    train_sentences: int = 16
    position_docs: int = 60
    trained: Path | None = None
    cnn: Path | None = None
    tweets: int = 2000
    device: torch.device | None = None
    source: str = SOURCE


# ------------------------------------------------------------------ inputs


def read_sentences(limit_words: int) -> tuple[str, list[TaggedSentence], int]:
    """(words, tags, IOB2 entities) sentences: CoNLL-2003 test when present here, else the
    bundled EWT test. Entities matter: without them `ner` never calls the backprop that
    spacy-transformers hands to the last listener, and the decoder would not train."""
    if CONLL_TEST.exists():
        source = "CoNLL-2003 test"
        read = [s for document in read_conll(CONLL_TEST, scheme="iob2") for s in document]
    else:
        source = "EWT test (bundled)"
        read = list(read_conllu(EWT_TEST))
    sentences = [(s.words, s.tags, s.ner) for s in read]
    picked: list[TaggedSentence] = []
    total = 0
    for sentence in sentences:
        if total >= limit_words:
            break
        picked.append(sentence)
        total += len(sentence[0])
    return source, picked, total


def position_examples(vocab: Any, n_documents: int) -> tuple[str, list[Example]]:
    """Training examples for the positions count: the first n CoNLL-2003 training documents
    (EWT test sentences where CoNLL is absent), cut at sentences into Docs of <= 150 words,
    as `prepare_conll03.py --train-doc-words 150` makes them."""
    if CONLL_TRAIN.exists():
        source = f"CoNLL-2003 train, first {n_documents} documents"
        sentences = [s for document in read_conll(CONLL_TRAIN, scheme="iob2")[:n_documents] for s in document]
    else:
        source = "EWT test (bundled)"
        sentences = list(read_conllu(EWT_TEST))
    docs = sentences_to_docs(vocab, sentences, max_words=150)
    examples = [
        Example(Doc(vocab, words=[t.text for t in d], sent_starts=[t.is_sent_start for t in d]), d) for d in docs
    ]
    return source, examples


def read_tweets(path: Path, limit: int) -> list[list[str]]:
    """The words of each tweet of a two-column CoNLL file (word TAB tag; an empty line between
    tweets). The few tokens that are only whitespace are dropped: a Doc cannot hold them."""
    tweets: list[list[str]] = []
    words: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line:
            if words:
                tweets.append(words)
                words = []
            continue
        word = line.split("\t")[0].strip()
        if word:
            words.append(word)
    return tweets[:limit]


def word_docs(nlp: Language, sentences: Sequence[TaggedSentence]) -> list[Doc]:
    """Fresh Docs of the sentences' words, nothing predicted yet."""
    return [Doc(nlp.vocab, words=w) for w, _, _ in sentences]


def n_words_of(sentences: Sequence[TaggedSentence]) -> int:
    return sum(len(w) for w, _, _ in sentences)


def piping(nlp: Language, sentences: Sequence[TaggedSentence]) -> Callable[[], None]:
    """A run of the whole pipeline over fresh Docs of the sentences, to be timed."""

    def run() -> None:
        list(nlp.pipe(word_docs(nlp, sentences)))

    return run


def piping_words(nlp: Language, texts: Sequence[list[str]]) -> Callable[[], None]:
    """A run of the whole pipeline over fresh Docs of the texts' words, one Doc each."""

    def run() -> None:
        list(nlp.pipe([Doc(nlp.vocab, words=words) for words in texts]))

    return run


# ------------------------------------------------------------------ pipelines


def build_nlp(unmask: str, source: str = SOURCE, device: torch.device | None = None) -> Language:
    """configs/default.cfg (CausalMaskLLM.v4, as shipped) over ``source``, not initialized."""
    config = spacy.util.load_config(ROOT / "configs" / "default.cfg", interpolate=True)
    config["components"]["transformer"]["model"]["@architectures"] = "spacy-cmllm.CausalMaskLLM.v4"
    config["components"]["transformer"]["model"]["name"] = source
    config["components"]["transformer"]["model"]["unmask"] = unmask
    if device is not None:
        config["components"]["transformer"]["model"]["device"] = str(device)
    return spacy.util.load_model_from_config(config, auto_fill=True)


def build_cnn(path: Path | None, sentences: Sequence[TaggedSentence]) -> tuple[Language, str]:
    """spaCy's CNN pipeline: a trained one, or configs/spacy-cnn.cfg initialized on the
    benchmark's own sentences (the architecture and label set of a trained one)."""
    if path is not None:
        return spacy.load(path), str(path)
    config = spacy.util.load_config(ROOT / "configs" / "spacy-cnn.cfg", interpolate=True)
    cnn = spacy.util.load_model_from_config(config, auto_fill=True)
    examples = [Example(Doc(cnn.vocab, words=w), Doc(cnn.vocab, words=w, tags=t, ents=e)) for w, t, e in sentences]
    cnn.initialize(lambda: examples)
    return cnn, "configs/spacy-cnn.cfg initialized on the benchmark sentences (untrained weights: the same speed)"


def settings_of(nlp: Language) -> dict[str, Any]:
    """The transformer model's settings (attrs) of a pipeline, read, never written."""
    return transformer_of(nlp).model.attrs


def bf16_of(nlp: Language) -> bool:
    """Whether the pipeline's decoder runs under bf16 autocast."""
    model = transformer_of(nlp).model
    return use_bf16_autocast(model.attrs["mixed_precision"], get_backbone(model).device)


# ------------------------------------------------------------------ the stages


def window_batches(unpacked: Language, docs: Sequence[Doc]) -> tuple[list[Batch], int]:
    """The prediction windows the transformer plans for ``docs``, one per row, padded and
    batched as it batches them, on the decoder's device; and the number of pieces."""
    backbone = get_backbone(transformer_of(unpacked).model)
    attrs = settings_of(unpacked)
    pieces = backbone.piece_encoder.encode_docs(docs)
    plan = plan_windows(
        [p.ids for p in pieces], window=attrs["window"], stride=attrs["stride"], bos_id=backbone.tokenizer.bos_token_id
    )
    lengths = [len(w) for w in plan.windows]
    batches = []
    for batch in batch_windows(lengths, max_pieces=attrs["max_batch_pieces"]):
        ids, mask = pad_windows([plan.windows[i] for i in batch], pad_id=backbone.tokenizer.pad_token_id)
        batches.append((torch.from_numpy(ids).to(backbone.device), torch.from_numpy(mask).to(backbone.device)))
    return batches, int(sum(len(p.ids) for p in pieces))


def forward_windows(decoder: torch.nn.Module, batches: Sequence[Batch], *, bf16: bool) -> None:
    """A raw Hugging Face forward over the batches, no grad, under the pipeline's autocast."""
    device = next(decoder.parameters()).device
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        for ids, mask in batches:
            decoder(input_ids=ids, attention_mask=mask, use_cache=False)


def inference_vs_raw_hf(
    unpacked: Language,
    sentences: Sequence[TaggedSentence],
    batches: Sequence[Batch],
    *,
    repeats: int,
    sync: Callable[[], None],
) -> dict[str, float]:
    """Seconds of the transformer component (one window per row) and of a raw Hugging Face
    forward over the very same window batches, interleaved; and of the full pipeline."""
    trf = transformer_of(unpacked)
    decoder = get_backbone(trf.model).decoder
    decoder.eval()
    bf16 = bf16_of(unpacked)
    docs = word_docs(unpacked, sentences)

    def raw_forward() -> None:
        forward_windows(decoder, batches, bf16=bf16)

    def pipeline_transformer() -> None:
        # All docs in one call, so that the pipeline forms the very same window batches as
        # the raw forward: the ratio then measures only the pipeline's own overhead.
        trf.predict(docs)

    raw_forward()  # warm-up
    # Interleaved, best of each: this machine's speed drifts between minutes.
    t_raw, t_trf = interleaved(repeats, raw_forward, pipeline_transformer, sync=sync)
    t_full = best_of(1, piping(unpacked, sentences), sync)
    return {"raw": t_raw, "transformer": t_trf, "full_pipeline": t_full}


def packed_vs_unpacked(
    timed: tuple[Language, Language],
    float32: tuple[Language, Language],
    sentences: Sequence[TaggedSentence],
    *,
    repeats: int,
    sync: Callable[[], None],
) -> dict[str, Any]:
    """nlp.pipe words/s of the (unpacked, packed) pipelines ``timed`` on sentence-level Docs
    (one Doc per sentence); the padding waste of each, counted by a spy; and the largest
    difference between a Doc's vectors in the two modes, in the (unpacked, packed) pipelines
    ``float32`` (float32 without autocast: bf16 rounds differently for different batch
    shapes, packed or not)."""
    n_words = n_words_of(sentences)
    waste, vectors, calls = {}, {}, {}
    # ... and with TF32 off: where something has switched float32 matrix products to TF32
    # (10-bit mantissa), packed and unpacked rows would differ by TF32's rounding, not ours.
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for pack, nlp in zip((False, True), float32):
            trf = transformer_of(nlp)
            docs = word_docs(nlp, sentences)
            with counted_positions(get_backbone(trf.model).decoder) as counted:
                trf.set_annotations(docs, trf.predict(docs))
            waste[pack] = 1 - counted["real"] / max(counted["positions"], 1)
            calls[pack] = counted["calls"]
            vectors[pack] = [d._.trf_data.model_output.last_hidden_state for d in docs if len(d)]
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    difference = max(float(numpy.abs(a - b).max()) for a, b in zip(vectors[False], vectors[True]))
    scale = max(float(numpy.abs(a).max()) for a in vectors[False])
    t_unpacked, t_packed = interleaved(repeats, piping(timed[0], sentences), piping(timed[1], sentences), sync=sync)
    return {
        "docs": len(sentences),
        "words_per_s": {"unpacked": n_words / t_unpacked, "packed": n_words / t_packed},
        "speedup": t_unpacked / t_packed,
        "padding_waste": {"unpacked": waste[False], "packed": waste[True]},
        "decoder_calls": {"unpacked": calls[False], "packed": calls[True]},
        "max_abs_difference": difference,
        "max_abs_value": scale,
        "equality_precision": "float32, no autocast, TF32 off",
    }


def int8_vs_float(
    packed: Language,
    packed_int8: Language,
    sentences: Sequence[TaggedSentence],
    trained: Path | None,
    *,
    repeats: int,
    sync: Callable[[], None],
) -> dict[str, Any]:
    """nlp.pipe words/s of the benchmark pipeline, packed, in int8 vs float; with a trained
    pipeline, its scores on the same sentences, float vs int8."""
    backbone = get_backbone(transformer_of(packed).model)
    if backbone.device.type != "cpu":
        return {"skipped": "int8 prediction is for CPUs"}
    n_words = n_words_of(sentences)
    start = time.perf_counter()
    piping(packed_int8, sentences)()  # builds the merged int8 copy once
    build = time.perf_counter() - start
    t_float, t_int8 = interleaved(repeats, piping(packed, sentences), piping(packed_int8, sentences), sync=sync)
    result: dict[str, Any] = {
        "words_per_s": {"float": n_words / t_float, "int8": n_words / t_int8},
        "speedup": t_float / t_int8,
        "first_int8_call_s": build,
        "kernel": int8_kernel()._asdict(),
        "autocast_in_float": bf16_of(packed),
    }
    if trained is not None:
        result["scores"] = {"pipeline": str(trained), **trained_scores(spacy.load(trained), sentences)}
    return result


def trained_scores(trained: Language, sentences: Sequence[TaggedSentence]) -> dict[str, dict[str, Any]]:
    """ents_f, tag_acc and words/s of nlp.evaluate on the sentences, packed, float and int8."""
    n_words = n_words_of(sentences)
    runs = {
        "float": pipeline_variant(trained, pack=True, int8=False),
        "int8": pipeline_variant(trained, pack=True, int8=True),
    }
    runs["int8"](" ".join(sentences[0][0]))  # builds the merged int8 copy outside the timing
    scores = {}
    for name, nlp in runs.items():
        examples = [Example(Doc(nlp.vocab, words=w), Doc(nlp.vocab, words=w, tags=t, ents=e)) for w, t, e in sentences]
        start = time.perf_counter()
        got = nlp.evaluate(examples)
        scores[name] = {
            "ents_f": got.get("ents_f"),
            "tag_acc": got.get("tag_acc"),
            "words_per_s": n_words / (time.perf_counter() - start),
        }
    return scores


def precision_table(
    modes: dict[str, Language],
    cnn: Language,
    sentences: Sequence[TaggedSentence],
    *,
    repeats: int,
    sync: Callable[[], None],
) -> dict[str, Any]:
    """Per precision (a packed pipeline each, as the shipped configs predict), on
    sentence-level Docs: the transformer component vs a raw HF forward replaying its own
    decoder calls (same packed rows, mask and position ids, same autocast), and the full
    pipeline; spaCy's CNN beside."""
    n_words = n_words_of(sentences)
    table = {}
    for mode, nlp in modes.items():
        trf = transformer_of(nlp)
        docs = word_docs(nlp, sentences)
        trf.predict(docs)  # builds the int8 copy where asked, outside the timing
        decoder = int8_decoder(trf.model) if settings_of(nlp)["int8"] else get_backbone(trf.model).decoder
        with recorded_calls(decoder) as calls:
            trf.predict(docs)
        raw = raw_forward(decoder, calls, bf16=bool(settings_of(nlp)["mixed_precision"]))
        raw()  # warm-up
        t_raw, t_trf = interleaved(repeats, raw, functools.partial(trf.predict, docs), sync=sync)
        t_pipe = best_of(repeats, piping(nlp, sentences), sync)
        table[mode] = {
            "raw_hf_words_per_s": n_words / t_raw,
            "transformer_words_per_s": n_words / t_trf,
            "pipeline_words_per_s": n_words / t_pipe,
            "transformer_vs_raw_hf": t_raw / t_trf,
            "decoder_calls": len(calls),
        }
    t_cnn = best_of(repeats, lambda: list(cnn.pipe(word_docs(cnn, sentences))), sync)
    return {"docs": len(sentences), "words": n_words, "modes": table, "spacy_cnn_words_per_s": n_words / t_cnn}


def tweets_comparison(
    smollm2: dict[str, Language], cnn: Language, limit: int, sync: Callable[[], None]
) -> dict[str, Any]:
    """nlp.pipe words/s on tweets, one Doc each: the SmolLM2 pipelines (by result name,
    packed) against spaCy's CNN pipeline, one pass each."""
    if limit <= 0 or not BTC_TEST.exists():
        return {"skipped": "no --tweets" if limit <= 0 else f"{BTC_TEST.name} not found"}
    tweets = read_tweets(BTC_TEST, limit)
    n_words = sum(len(t) for t in tweets)
    timings = {name: best_of(1, piping_words(nlp, tweets), sync) for name, nlp in smollm2.items()}
    timings["spacy_cnn"] = best_of(1, piping_words(cnn, tweets), sync)
    words_per_s = {name: n_words / t for name, t in timings.items()}
    return {
        "source": "Broad Twitter Corpus, test split (section F)",
        "tweets": len(tweets),
        "words": n_words,
        "words_per_s": words_per_s,
        "cnn_vs_smollm2": {
            name: words_per_s["spacy_cnn"] / v for name, v in words_per_s.items() if name != "spacy_cnn"
        },
    }


def unmasked_vs_causal(
    unpacked: Language, batches: Sequence[Batch], *, repeats: int, sync: Callable[[], None]
) -> tuple[float, float]:
    """Seconds of the raw forward over the batches with the pipeline's unmasking and with
    the stock causal model (the same decoder, its hooks removed for the run), interleaved."""
    backbone = get_backbone(transformer_of(unpacked).model)
    decoder, bf16, unmasked_layers = backbone.decoder, bf16_of(unpacked), backbone.unmask_handle.layers
    spec = settings_of(unpacked)["settings"]["unmask"]

    def causal() -> None:
        backbone.unmask_handle.remove()
        try:
            forward_windows(decoder, batches, bf16=bf16)
        finally:
            backbone.unmask_handle = unmask_layers(decoder, spec)

    t_causal, t_unmasked = interleaved(repeats, causal, lambda: forward_windows(decoder, batches, bf16=bf16), sync=sync)
    assert backbone.unmask_handle.layers == unmasked_layers
    return t_causal, t_unmasked


def training_vs_plain_peft(
    unpacked: Language, examples: Sequence[Example], source: str, *, steps: int, sync: Callable[[], None]
) -> dict[str, float]:
    """Seconds of nlp.update (one window per row) against a plain PyTorch + peft loop with
    the same LoRA over the same consecutive training windows, a linear head and AdamW."""
    backbone = get_backbone(transformer_of(unpacked).model)
    attrs, device = settings_of(unpacked), backbone.device
    optimizer = Adam(0.0)  # timing only: a zero rate keeps every step identical
    got: dict[str, bool] = {}
    lora = next(p for n, p in backbone.decoder.named_parameters() if "lora_" in n)
    hook = lora.register_hook(lambda grad: got.update(grad=True))
    unpacked.update(list(examples), sgd=optimizer)  # warm-up
    hook.remove()
    assert got, "nlp.update did not reach the decoder's adapters"
    pieces = backbone.piece_encoder.encode_docs([eg.predicted for eg in examples])
    # The windows nlp.update runs: consecutive, each piece once, padding bounded per call.
    plan = plan_training_windows(
        [p.ids for p in pieces], window=attrs["window"], bos_id=backbone.tokenizer.bos_token_id
    )
    batches = []
    for batch in batch_windows(
        [len(w) for w in plan.windows], max_pieces=attrs["max_batch_pieces"], max_padding=TRAIN_MAX_PADDING
    ):
        ids, mask = pad_windows([plan.windows[i] for i in batch], pad_id=backbone.tokenizer.pad_token_id)
        batches.append((torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)))
    # As a Module: transformers wraps PreTrainedModel.to with functools.wraps, whose type mypy
    # does not bind to an instance.
    plain_base: torch.nn.Module = load_decoder(source, lm_head=False)[0]
    plain_base.to(device)
    unmask_layers(plain_base, attrs["settings"]["unmask"])
    plain = add_lora(
        plain_base, **LoraSettings(**dict(unpacked.config["components"]["transformer"]["model"]["lora"])).to_dict()
    )
    plain.train()
    head = torch.nn.Linear(backbone.hidden_size, 50).to(device)
    adamw = torch.optim.AdamW([p for p in plain.parameters() if p.requires_grad] + list(head.parameters()), lr=0.0)
    bf16 = bf16_of(unpacked)

    def plain_step() -> None:
        adamw.zero_grad()
        loss: float | torch.Tensor = 0.0
        for ids, mask in batches:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                hidden = plain(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            # float32 heads, as the pipeline's (its decoder output is cast to float32 too).
            logits = head(hidden[mask.bool()].float())
            target = torch.zeros(len(logits), dtype=torch.long, device=device)
            loss = loss + torch.nn.functional.cross_entropy(logits, target)
        assert isinstance(loss, torch.Tensor), "no training windows"
        loss.backward()
        adamw.step()

    plain_step()  # warm-up
    t_plain, t_update = interleaved(
        steps, plain_step, lambda: unpacked.update(list(examples), sgd=optimizer), sync=sync
    )
    return {"plain": t_plain, "update": t_update, "pieces": int(sum(len(p.ids) for p in pieces))}


def training_positions(packed: Language, source: str, examples: Sequence[Example]) -> dict[str, Any]:
    """Decoder positions per real piece in nlp.update (packed, as v3/v4 train), counted by a
    spy on the decoder, in batches of ~1,000 words as `spacy train` with the recipe makes
    them; beside it, what the overlapping prediction windows would cost there."""
    backbone = get_backbone(transformer_of(packed).model)
    attrs = settings_of(packed)
    batches, batch, words = [], [], 0
    for eg in examples:
        batch.append(eg)
        words += len(eg.reference)
        if words >= 1000:
            batches.append(batch)
            batch, words = [], 0
    if batch:
        batches.append(batch)
    with counted_positions(backbone.decoder) as counted:
        for batch in batches:
            packed.update(batch, sgd=Adam(0.0))
    pieces = backbone.piece_encoder.encode_docs([eg.predicted for eg in examples])
    n_pieces = int(sum(len(p.ids) for p in pieces))
    overlapping = 0
    for batch in batches:
        batch_pieces = backbone.piece_encoder.encode_docs([eg.predicted for eg in batch])
        plan = plan_windows(
            [p.ids for p in batch_pieces],
            window=attrs["window"],
            stride=attrs["stride"],
            bos_id=backbone.tokenizer.bos_token_id,
        )
        lengths = [len(w) for w in plan.windows]
        overlapping += sum(
            len(b) * max(lengths[i] for i in b) for b in batch_windows(lengths, max_pieces=attrs["max_batch_pieces"])
        )
    return {
        "source": source,
        "docs": len(examples),
        "batches": len(batches),
        "pieces": n_pieces,
        "positions": counted["positions"],
        "real_positions": counted["real"],
        "per_piece_training": counted["positions"] / n_pieces,
        "per_piece_overlapping": overlapping / n_pieces,
        "pack": attrs["pack"],
        "window": attrs["window"],
        "stride": attrs["stride"],
    }


# ------------------------------------------------------------------ the whole benchmark


def measure(options: SpeedOptions) -> dict[str, Any]:
    """Every stage, on pipelines built from one initialized pipeline; the results as
    speed.json holds them (without its "command")."""
    device = options.device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = synchronizer(device)
    fix_random_seed(0)
    source, sentences, n_words = read_sentences(options.words)
    print(f"text: {source}, {len(sentences)} sentences, {n_words} words; device {device}", flush=True)
    nlp = build_nlp("0011", options.source, device)
    docs = [Doc(nlp.vocab, words=w, tags=t, ents=e) for w, t, e in sentences]
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in docs]
    positions_source, positions_examples = position_examples(nlp.vocab, options.position_docs)
    # Initialized on both texts, so that every gold label of either is known to the heads.
    nlp.initialize(lambda: examples[:200] + positions_examples)
    attrs = settings_of(nlp)
    on_cpu = device.type == "cpu"
    unpacked, packed = pipeline_variant(nlp, pack=False), pipeline_variant(nlp, pack=True)
    packed_int8 = pipeline_variant(nlp, pack=True, int8=True)

    batches, n_pieces = window_batches(unpacked, word_docs(unpacked, sentences))
    padded = sum(int(ids.numel()) for ids, _ in batches)
    real = sum(int(mask.sum()) for _, mask in batches)
    seconds = inference_vs_raw_hf(unpacked, sentences, batches, repeats=options.repeats, sync=sync)
    t_raw, t_trf = seconds["raw"], seconds["transformer"]
    bf16 = bf16_of(unpacked)
    print(
        f"raw HF forward {n_words / t_raw:.0f} words/s; pipeline transformer {n_words / t_trf:.0f}; "
        f"full pipeline {n_words / seconds['full_pipeline']:.0f} (bf16 autocast: {bf16})",
        flush=True,
    )

    float32 = (
        pipeline_variant(nlp, pack=False, mixed_precision=False),
        pipeline_variant(nlp, pack=True, mixed_precision=False),
    )
    packing = packed_vs_unpacked((unpacked, packed), float32, sentences, repeats=options.repeats, sync=sync)
    print(
        f"packed {packing['words_per_s']['packed']:.0f} words/s vs unpacked {packing['words_per_s']['unpacked']:.0f} "
        f"(x{packing['speedup']:.2f}); padding waste {packing['padding_waste']['packed']:.1%} vs "
        f"{packing['padding_waste']['unpacked']:.1%}; largest vector difference {packing['max_abs_difference']:.2e}",
        flush=True,
    )
    int8 = int8_vs_float(packed, packed_int8, sentences, options.trained, repeats=options.repeats, sync=sync)
    if "skipped" not in int8:
        print(
            f"int8 {int8['words_per_s']['int8']:.0f} words/s vs float {int8['words_per_s']['float']:.0f} (x{int8['speedup']:.2f}); "
            f"scores {int8.get('scores')}",
            flush=True,
        )

    cnn, cnn_source = build_cnn(options.cnn, sentences)
    modes = {"fp32": float32[1]}
    if use_bf16_autocast(None, device):
        modes["bf16"] = pipeline_variant(nlp, pack=True, mixed_precision=True)
    if on_cpu:
        modes["int8"] = pipeline_variant(nlp, pack=True, mixed_precision=False, int8=True)
    table = precision_table(modes, cnn, sentences, repeats=options.repeats, sync=sync)
    for mode, row in table["modes"].items():
        print(
            f"{mode}: transformer {row['transformer_words_per_s']:.0f} words/s vs raw HF {row['raw_hf_words_per_s']:.0f} "
            f"(x{row['transformer_vs_raw_hf']:.2f}); full pipeline {row['pipeline_words_per_s']:.0f}",
            flush=True,
        )
    print(f"spaCy CNN pipeline {table['spacy_cnn_words_per_s']:.0f} words/s", flush=True)
    smollm2 = {
        "smollm2_bf16" if bf16_of(packed) else "smollm2_fp32": packed,
        **({"smollm2_int8": packed_int8} if on_cpu else {}),
    }
    tweets = tweets_comparison(smollm2, cnn, options.tweets, sync)
    if "skipped" not in tweets:
        print(f"tweets: {tweets['words_per_s']}", flush=True)

    t_causal, t_unmasked = unmasked_vs_causal(unpacked, batches, repeats=options.repeats, sync=sync)
    print(f"causal {n_pieces / t_causal:.0f} pieces/s; unmasked {n_pieces / t_unmasked:.0f}", flush=True)
    training = training_vs_plain_peft(
        unpacked, examples[: options.train_sentences], options.source, steps=options.train_steps, sync=sync
    )
    t_plain, t_update, train_n = training["plain"], training["update"], training["pieces"]
    print(
        f"training: nlp.update {train_n / t_update:.0f} pieces/s; plain peft loop {train_n / t_plain:.0f}", flush=True
    )
    positions = training_positions(packed, positions_source, positions_examples)
    print(
        f"training positions per real piece: {positions['per_piece_training']:.3f} "
        f"(overlapping prediction windows: {positions['per_piece_overlapping']:.3f})",
        flush=True,
    )

    ratios = {
        "inference_vs_raw_hf": t_raw / t_trf,
        "unmasked_vs_causal": t_causal / t_unmasked,
        "training_vs_plain_peft": t_plain / t_update,
    }
    return {
        "text": source,
        "words": n_words,
        "pieces": n_pieces,
        "padding_waste": 1 - real / padded,
        "words_per_s": {
            "raw_hf_forward": n_words / t_raw,
            "pipeline_transformer": n_words / t_trf,
            "full_pipeline": n_words / seconds["full_pipeline"],
        },
        "pieces_per_s": {
            "causal_forward": n_pieces / t_causal,
            "unmasked_forward": n_pieces / t_unmasked,
            "train_nlp_update": train_n / t_update,
            "train_plain_peft": train_n / t_plain,
        },
        "ratios": ratios,
        "targets": TARGETS,
        "meets_targets": {
            **{k: ratios[k] >= TARGETS[k] for k in TARGETS},
            "training_positions_per_piece": positions["per_piece_training"] <= MAX_TRAIN_POSITIONS_PER_PIECE,
            "packed_vs_unpacked": packing["speedup"] >= PACKED_MIN_SPEEDUP,
            "packed_padding_waste": packing["padding_waste"]["packed"] <= MAX_PACKED_PADDING_WASTE,
            "packed_vectors_equal": packing["max_abs_difference"] <= MAX_PACKED_DIFFERENCE,
            **{
                f"{mode}_transformer_vs_raw_hf": row["transformer_vs_raw_hf"] >= TARGETS["inference_vs_raw_hf"]
                for mode, row in table["modes"].items()
            },
        },
        "packing": packing,
        "int8": int8,
        "precision_table": {**table, "spacy_cnn": cnn_source},
        "tweets": tweets,
        "training_positions": positions,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **provenance(device=str(device)),
        "settings": {
            **{k: attrs[k] for k in ("window", "stride", "max_batch_pieces", "mixed_precision")},
            "bf16_autocast": bf16,
        },
        "repeats": options.repeats,
    }
