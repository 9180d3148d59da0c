"""One safetensors writer and reader for every file the project writes: tensors plus JSON metadata.

Safetensors holds no code, so reading a file never runs anything (docs/design.md, "Safe loading");
every metadata value is JSON-encoded, so numbers and lists come back as they were written.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..errors import WeightsError
from ..io import atomic_write


def write_tensor_file(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict) -> Path:
    """Write ``tensors`` (made contiguous, on the CPU) and ``metadata`` atomically."""
    plain = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    encoded = {k: json.dumps(v) for k, v in metadata.items()}
    return atomic_write(path, lambda tmp: save_file(plain, str(tmp), metadata=encoded))


def read_metadata(path: str | Path, what: str = "safetensors") -> dict:
    """The decoded metadata of a file; errors name the file. Non-JSON entries read as absent."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: {what} file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{path}: not a readable safetensors file ({err})") from None
    try:
        return {k: json.loads(v) for k, v in raw.items()}
    except ValueError:  # e.g. {"format": "pt"} from other tools: not JSON-encoded
        return {}


def check_metadata(path: str | Path, schema, meta: dict, what: str) -> dict:
    """``meta`` checked against the pydantic model ``schema``: every key it requires present and of
    its type (a file's own claims, checked before they are used); one line naming the file."""
    from pydantic import ValidationError

    from ..schema.validate import as_typed, expected_text

    missing = [k for k, f in schema.model_fields.items() if f.is_required() and k not in meta]
    if missing:
        raise WeightsError(f"{path}: metadata lacks {missing} (is it a {what} written by segattack?)")
    try:
        schema.model_validate(meta)
    except ValidationError as err:
        e = err.errors(include_url=False)[0]
        key = str(e["loc"][0]) if e["loc"] else None
        where = f"metadata {key}={as_typed(meta[key])}" if key in meta else "metadata"
        raise WeightsError(f"{path}: {where}: {expected_text(e)}") from None
    return meta


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise WeightsError(f"{path}: cannot read tensors ({err})") from None
