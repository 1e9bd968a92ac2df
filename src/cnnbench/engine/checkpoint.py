"""Checkpoints: written atomically, read with ``weights_only=True`` (a pickle cannot run code on load)."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from ..errors import CorruptCheckpointError, UnsafeCheckpointError
from ..fileio import write_bytes

LAST, PREVIOUS = "last.pt", "prev.pt"


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Temporary files a killed process left half-written (`.last.pt.*.tmp`): never read, safe to delete."""
    stale = sorted(Path(folder).glob(".*.tmp")) if Path(folder).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def save_checkpoint(folder: str | Path, state: dict[str, Any]) -> Path:
    """Write ``folder/last.pt`` atomically, keeping the one before as ``prev.pt``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    last = folder / LAST
    if last.exists():
        os.replace(last, folder / PREVIOUS)
    return write_bytes(last, buf.getvalue())


def load_file(path: str | Path, map_location="cpu") -> dict[str, Any]:
    """Load one checkpoint file; a corrupt file raises CorruptCheckpointError, one carrying code
    UnsafeCheckpointError."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Unsupported" in str(e) or "global" in str(e).lower():
            raise UnsafeCheckpointError(
                f"Refusing to load {path}: it holds Python objects other than tensors and plain data, "
                "which could run code when unpickled. Only load checkpoints you trust, and only ones written by "
                "cnnbench."
            ) from None
        raise CorruptCheckpointError(f"Checkpoint {path} is corrupt ({e}).") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CorruptCheckpointError(f"Checkpoint {path} is truncated or corrupt ({str(e).splitlines()[0]}).") from None


def load_latest(folder: str | Path, map_location="cpu") -> tuple[dict[str, Any] | None, list[str]]:
    """The newest readable checkpoint in ``folder`` (last.pt, else prev.pt), with warnings about bad ones."""
    folder = Path(folder)
    warnings: list[str] = []
    for name in (LAST, PREVIOUS):
        path = folder / name
        if not path.exists():
            continue
        try:
            return load_file(path, map_location), warnings
        except CorruptCheckpointError as e:
            warnings.append(f"{e} Falling back to the previous checkpoint.")
    return None, warnings
