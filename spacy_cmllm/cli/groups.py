"""Group strings as command lines hand them over.

spaCy reads command-line values as JSON, so `--vars.unmask 0011` arrives as the number 11
and would reach a config as "11": a different spec. With the number of groups known, a
purely numeric value gets its leading zeros back; anything else that is not a string of
'0'/'1' characters is refused.
"""

from ..errors import CmllmError, Errors


def normalise_groups(value: object, groups: int) -> str:
    """``value`` as a group string of ``groups`` characters: normalise_groups(11, 4) == "0011"."""
    text = str(value).strip().strip("\"'")
    if not text or set(text) - {"0", "1"} or len(text) > groups:
        raise CmllmError(Errors.E140.format(value=value, groups=groups))
    return text.zfill(groups)
