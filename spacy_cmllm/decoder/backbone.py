"""The torch side of the pipeline component: base decoder + unmasking + LoRA + tokenizer.

A Backbone is what the Thinc model's PyTorchShim holds. It knows how to load itself from
a base-model reference (at ``nlp.initialize``) and how to save only what training changed:
adapter weights (safetensors), the tokenizer, what the adapters' meaning depends on (the
unmask spec and the LoRA shape, compared with the config at load), and a fingerprint of
the base weights (the base itself is found through the config's ``name``). The base
weights are embedded only on request, for small self-contained pipelines.

Every load, and every ``nlp.initialize``, measures the attention pattern on a short random
sequence (probe.check_unmasked): a kernel or transformers release that silently ignores
the unmasking fails there, not after hours of training.
"""

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import srsly
import torch
from torch import nn
from transformers import PreTrainedModel

from ..errors import CmllmError, Errors
from .fingerprint import weights_fingerprint
from .layout import decoder_layers, find_base_model
from .load import DTYPES, load_decoder
from .lora import LoraSettings, adapter_state, add_lora, load_adapter_state
from .pieces import PieceEncoder
from .probe import check_unmasked
from .threads import settle_worker_threads
from .unmask import UnmaskSpec, parse_spec, unmask_layers

if TYPE_CHECKING:
    from peft import PeftModel

_FORMAT = 1


@dataclass(frozen=True)
class BackboneSettings:
    """How to build the decoder; mirrors the architecture's config parameters."""

    name: str
    unmask: UnmaskSpec = "0000"
    dtype: str = "float32"
    quantization: str | None = None
    attn_implementation: str = "sdpa"
    lora: LoraSettings | None = field(default_factory=LoraSettings)
    device: str | None = None
    gradient_checkpointing: bool = False
    embed_base: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise CmllmError(
                Errors.E040.format(
                    name="name", value=self.name, why="give a hub name, a local directory or a .gguf file"
                )
            )
        if self.dtype not in DTYPES:
            raise CmllmError(Errors.E013.format(dtype=self.dtype, allowed=", ".join(map(repr, DTYPES))))
        if self.quantization not in (None, "4bit"):
            raise CmllmError(Errors.E014.format(quantization=self.quantization))
        # The spec's syntax is checked now, at config load, so a typo fails before any
        # weights are read; its range is checked once the number of layers is known.
        parse_spec(self.unmask, 1 << 16)

    def torch_device(self) -> torch.device:
        if self.device:
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BackboneSettings":
        data = dict(data)
        if data.get("lora") is not None:
            data["lora"] = LoraSettings(**dict(data["lora"]))
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["unmask"] = self.unmask if isinstance(self.unmask, str) else list(self.unmask)
        data["lora"] = None if self.lora is None else self.lora.to_dict()
        return data

    def trained_shape(self) -> dict[str, Any]:
        """What saved adapters are only valid with, as saved beside them and compared with
        the config at load (check_trained_shape). The base's location, dtype, device and
        precision may change between training and loading; LoRA dropout too."""
        unmask = self.unmask if isinstance(self.unmask, str) else list(self.unmask)
        return {"unmask": unmask, "lora": _lora_shape(None if self.lora is None else self.lora.to_dict())}


def _lora_shape(lora: dict[str, Any] | None) -> dict[str, Any] | None:
    # Target order does not change the adapters; alpha 32 and 32.0 are the same scaling.
    if lora is None:
        return None
    return {"r": int(lora["r"]), "alpha": float(lora["alpha"]), "target_modules": sorted(lora["target_modules"])}


def check_trained_shape(saved: dict[str, Any], settings: BackboneSettings, n_layers: int) -> None:
    """Refuse a config that changes what the saved adapters were trained with.

    saved: the "settings" entry of a saved backbone (trained_shape(); older files hold all
        of BackboneSettings.to_dict(), whose extra keys are ignored).
    settings: the settings the config asks for now.
    n_layers: the base model's layer count, to compare resolved layers: "0011" and the
        list of the same indices are one spec.
    """
    saved_layers = list(parse_spec(saved["unmask"], n_layers))
    wanted_layers = list(parse_spec(settings.unmask, n_layers))
    if saved_layers != wanted_layers:
        raise CmllmError(
            Errors.E033.format(
                saved=saved["unmask"], saved_layers=saved_layers, wanted=settings.unmask, wanted_layers=wanted_layers
            )
        )
    saved_lora = _lora_shape(saved.get("lora"))
    wanted_lora = settings.trained_shape()["lora"]
    if saved_lora != wanted_lora:
        if saved_lora is None or wanted_lora is None:
            why = "adapters cannot be added to or dropped from a trained pipeline"
        else:
            why = "different " + ", ".join(k for k in saved_lora if saved_lora[k] != wanted_lora[k])
        raise CmllmError(Errors.E034.format(saved=saved_lora, wanted=wanted_lora, why=why))


class Backbone(nn.Module):
    """The loaded decoder with its tokenizer and provenance."""

    # (smoothing, bos_id, window) and the int8 copy built for them; set with
    # object.__setattr__ (not a submodule), so declared here for type checkers.
    _int8_decoder: tuple[tuple[float, int | None, int], nn.Module] | None

    def __init__(
        self,
        decoder: nn.Module,
        tokenizer: Any,
        settings: BackboneSettings,
        *,
        fingerprint: str,
        source_config: dict[str, Any],
    ):
        super().__init__()
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.settings = settings
        self.fingerprint = fingerprint
        self.source_config = source_config
        self.unmask_handle = unmask_layers(decoder, settings.unmask)
        # Set by a training forward, cleared by its backprop (see model.forward).
        self.awaiting_backprop = False
        self.warned_no_backprop = False
        self._piece_encoder: PieceEncoder | None = None
        # Not a submodule: never saved, never trained, never moved with the backbone.
        object.__setattr__(self, "_int8_decoder", None)

    # -- pickling (nlp.pipe(n_process=N) under spawn, pickle.dumps(nlp)) -----------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # The int8 copy is rebuilt on first use; its prepacked kernels may not pickle.
        state["_int8_decoder"] = None
        state["_piece_encoder"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # The unmasking hooks are picklable objects (decoder/unmask.py) and come back with
        # the layers they were registered on, is_causal flags included. A process that
        # unpickles the pipeline (a spawned worker) settles its threads first, then
        # measures the attention pattern as every load does.
        super().__setstate__(state)
        settle_worker_threads()
        self.check_attention_pattern()

    @property
    def piece_encoder(self) -> PieceEncoder:
        if self._piece_encoder is None:
            self._piece_encoder = PieceEncoder(self.tokenizer)
        return self._piece_encoder

    def int8_decoder(self, *, smoothing: float, bos_id: int | None, window: int) -> nn.Module:
        """A merged int8 copy of the decoder for CPU prediction, built on first use (E077
        where it cannot be built) and checked with the unmask probe (per-token scales keep
        every position independent of later ones, so the probe measures it as it does
        the float decoder).

        smoothing: SmoothQuant's alpha (decoder/smoothing.py), 0 for none. Its calibration
            windows are laid out as prediction's: at most ``window`` pieces, after the
            ``bos_id`` sink where windows have one (the sink's activations are the largest
            of all)."""
        key = (float(smoothing), bos_id, window)
        if self._int8_decoder is None or self._int8_decoder[0] != key:
            from .quantize import int8_copy
            from .smoothing import CALIBRATION_TEXTS

            def rehook(handle: Any) -> None:
                self.unmask_handle = handle

            head = [bos_id] if bos_id is not None else []
            encoded = self.tokenizer(list(CALIBRATION_TEXTS), add_special_tokens=False)["input_ids"]
            calibration = [torch.tensor([head + list(ids[:window])], dtype=torch.long) for ids in encoded if ids]
            quantized = int8_copy(
                self.decoder,
                unmask=self.settings.unmask,
                handle=self.unmask_handle,
                rehook=rehook,
                calibration=calibration,
                smoothing=smoothing,
            )
            expected = parse_spec(self.settings.unmask, len(decoder_layers(quantized)))
            check_unmasked(quantized, expected, spec=self.settings.unmask)
            object.__setattr__(self, "_int8_decoder", (key, quantized))
            return quantized
        return self._int8_decoder[1]

    def drop_int8_decoder(self) -> None:
        """Forget the int8 copy (the adapters are about to change)."""
        object.__setattr__(self, "_int8_decoder", None)

    # -- construction --------------------------------------------------------------------

    @classmethod
    def load(cls, settings: BackboneSettings) -> "Backbone":
        """Load the base named by settings.name, unmask it and add fresh adapters."""
        base, tokenizer = _load_base(settings)
        backbone = cls._assemble(base, tokenizer, settings)
        backbone.check_attention_pattern()
        return backbone

    @classmethod
    def _assemble(
        cls,
        base: PreTrainedModel,
        tokenizer: Any,
        settings: BackboneSettings,
        *,
        expected_fingerprint: str | None = None,
        trained_shape: dict[str, Any] | None = None,
    ) -> "Backbone":
        # Layout and spec first: they explain a wrong model better than LoRA's complaints.
        n_layers = len(decoder_layers(base))
        parse_spec(settings.unmask, n_layers)
        fingerprint = weights_fingerprint(base)
        if expected_fingerprint is not None and fingerprint != expected_fingerprint:
            raise CmllmError(Errors.E030.format(source=settings.name, found=fingerprint, expected=expected_fingerprint))
        # After the fingerprint: on another base, "wrong base" is the better explanation.
        if trained_shape is not None:
            check_trained_shape(trained_shape, settings, n_layers)
        source_config = json.loads(base.config.to_json_string(use_diff=False))
        if settings.gradient_checkpointing:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # The base, or the peft model around it.
        decoder: nn.Module = base
        if settings.lora is not None:
            if settings.quantization == "4bit":
                from peft import prepare_model_for_kbit_training

                decoder = prepare_model_for_kbit_training(
                    decoder,
                    use_gradient_checkpointing=settings.gradient_checkpointing,
                    gradient_checkpointing_kwargs={"use_reentrant": False},
                )
            decoder = add_lora(decoder, **settings.lora.to_dict())
        else:
            decoder.requires_grad_(False)
        if settings.quantization is None:
            decoder.to(settings.torch_device())
        return cls(decoder, tokenizer, settings, fingerprint=fingerprint, source_config=source_config)

    # -- introspection -------------------------------------------------------------------

    @property
    def base_model(self) -> PreTrainedModel:
        """The module that runs the decoder blocks (e.g. LlamaModel), inside any wrapper."""
        # A Backbone holds Hugging Face decoders only (_assemble's base).
        return cast(PreTrainedModel, find_base_model(self.decoder))

    @property
    def hidden_size(self) -> int:
        return int(self.base_model.config.hidden_size)

    @property
    def n_layers(self) -> int:
        return int(self.base_model.config.num_hidden_layers)

    @property
    def device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.decoder.parameters())

    def check_attention_pattern(self) -> None:
        """Measure which layers attend to later positions and raise E036 unless exactly the
        configured ones do. One short sequence, no grad: about 0.3 s for SmolLM2-135M on
        one CPU thread. Weights, training flags and the global RNG are left as they were."""
        expected = parse_spec(self.settings.unmask, len(decoder_layers(self.decoder)))
        check_unmasked(self.decoder, expected, spec=self.settings.unmask)

    # -- serialization -------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        from safetensors.torch import save

        msg: dict[str, Any] = {
            "format": _FORMAT,
            "settings": self.settings.trained_shape(),
            "fingerprint": self.fingerprint,
            "tokenizer": _tokenizer_files(self.tokenizer),
            "adapter": save(adapter_state(self.decoder)) if self.settings.lora is not None else None,
            "base": None,
        }
        if self.settings.embed_base:
            state = {k: v.detach().cpu().contiguous() for k, v in _base_state(self.decoder).items()}
            msg["base"] = {"config": self.source_config, "weights": save(state)}
        body = srsly.msgpack_dumps(msg)
        # A checksum, because safetensors validates its header but not the tensor bytes:
        # a damaged adapter would otherwise load and predict garbage without a word.
        return srsly.msgpack_dumps({"sha256": hashlib.sha256(body).hexdigest(), "body": body})

    @classmethod
    def from_bytes(cls, data: bytes, settings: BackboneSettings) -> "Backbone":
        """Rebuild a saved backbone. The base comes from the embedded weights if there are
        any, else from settings.name (the config may point it at a new location) and must
        match the saved fingerprint."""
        from safetensors.torch import load

        try:
            outer = srsly.msgpack_loads(data)
            if hashlib.sha256(outer["body"]).hexdigest() != outer["sha256"]:
                raise ValueError("checksum mismatch")
            msg = srsly.msgpack_loads(outer["body"])
            if not isinstance(msg, dict) or msg.get("format") != _FORMAT:
                raise ValueError(f"unknown format {msg.get('format') if isinstance(msg, dict) else type(msg).__name__}")
        except Exception as err:  # msgpack raises several unrelated types on garbage
            raise CmllmError(Errors.E031.format(why=str(err))) from err
        tokenizer = _tokenizer_from_files(msg["tokenizer"])
        if msg["base"] is not None:
            base = _base_from_embedded(msg["base"], settings)
        else:
            base, _ = _load_base(settings)
        backbone = cls._assemble(
            base, tokenizer, settings, expected_fingerprint=msg["fingerprint"], trained_shape=msg["settings"]
        )
        if msg["adapter"] is not None:
            if settings.lora is None:
                raise CmllmError(
                    Errors.E031.format(why="the pipeline has adapter weights but its config sets lora = null")
                )
            try:
                state = load(msg["adapter"])
            except Exception as err:
                raise CmllmError(Errors.E031.format(why=str(err))) from err
            load_adapter_state(backbone.decoder, state)
            backbone.decoder.to(backbone.device)
        backbone.check_attention_pattern()
        return backbone


def _load_base(settings: BackboneSettings) -> tuple[PreTrainedModel, Any]:
    return load_decoder(
        settings.name,
        dtype=settings.dtype,
        quantization=settings.quantization,
        attn_implementation=settings.attn_implementation,
        lm_head=False,
    )


def _base_state(decoder: nn.Module) -> dict[str, torch.Tensor]:
    """The base weights under their stock names, without adapters."""
    # peft's PeftModel method, where the decoder has adapters.
    base = cast("PeftModel", decoder).get_base_model() if hasattr(decoder, "get_base_model") else decoder
    state = {}
    for name, tensor in base.state_dict().items():
        if "lora_" in name:
            continue
        state[name.replace(".base_layer", "")] = tensor
    return state


def _base_from_embedded(embedded: dict[str, Any], settings: BackboneSettings) -> PreTrainedModel:
    from safetensors.torch import load
    from transformers import AutoConfig, AutoModel

    config_dict = dict(embedded["config"])
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    config._attn_implementation = settings.attn_implementation
    model = AutoModel.from_config(config, torch_dtype=DTYPES[settings.dtype])
    try:
        state = load(embedded["weights"])
    except Exception as err:
        raise CmllmError(Errors.E031.format(why=f"embedded base weights: {err}")) from err
    model.load_state_dict(state, strict=True)
    return model.eval()


def _tokenizer_files(tokenizer: Any) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


def _tokenizer_from_files(files: dict[str, bytes]):
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files.items():
            (Path(tmp) / Path(name).name).write_bytes(content)
        return AutoTokenizer.from_pretrained(tmp)
