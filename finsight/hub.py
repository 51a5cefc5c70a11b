"""Hugging Face Hub access, decided once for every command that loads a hub id.

Offline (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set, or the hub endpoint not answering
a short probe) means ``local_files_only=True``: a cached copy still loads, and a missing one
fails at once with the same hint everywhere, instead of after half a minute of retries.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from finsight.errors import ModelError

OFFLINE_HINT = ("download it where the hub is reachable and pass its local directory: --model DIR "
                "(evaluate and export take DIR as their MODEL argument)")
_TRUE = ("1", "true", "yes", "on")


def offline_env() -> bool:
    return any(os.environ.get(name, "").strip().lower() in _TRUE
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@functools.lru_cache(maxsize=4)
def _reachable(endpoint: str, timeout: float) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout)
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the hub is there
    except (OSError, ValueError):
        return False
    return True


def online(timeout: float = 1.5) -> bool:
    """True when hub ids may be downloaded: not offline by env, and the endpoint answers."""
    if offline_env():
        return False
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    return _reachable(endpoint.rstrip("/"), timeout)


def pretrained_kwargs(revision: str | None = None) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for a hub id: its revision, and
    ``local_files_only`` when offline so nothing waits on retries."""
    kwargs: dict[str, Any] = {"revision": revision} if revision else {}
    if not online():
        kwargs["local_files_only"] = True
    return kwargs


def load_error(ref: str, exc: Exception, *, what: str = "model") -> ModelError:
    """The one message for a hub id that did not load."""
    text = str(exc)
    first = text.strip().splitlines()[0] if text.strip() else exc.__class__.__name__
    if "does not appear to have" in text or "no file named" in text.lower():
        return ModelError(f"{what} {ref} is incomplete: {first}")
    if online():
        return ModelError(f"cannot load {what} '{ref}' from the Hugging Face Hub ({first}): no such "
                          "model, or it is private or gated (log in with `hf auth login`); "
                          f"{OFFLINE_HINT}")
    reason = ("HF_HUB_OFFLINE is set" if offline_env() else "the hub is unreachable from here")
    return ModelError(f"cannot load {what} '{ref}': not a local directory, not in the Hugging Face "
                      f"cache, and {reason}; {OFFLINE_HINT}")


def check_available(ref: str, revision: str | None = None) -> None:
    """Fail fast, before torch or transformers load, for a hub id that cannot load offline."""
    if online():
        return
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(ref, "config.json", revision=revision)
    except ValueError as exc:  # not a valid repo id
        raise load_error(ref, exc) from None
    if not isinstance(cached, str):
        raise load_error(ref, FileNotFoundError(f"{ref}/config.json is not in the local cache"))

