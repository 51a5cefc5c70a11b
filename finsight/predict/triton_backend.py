"""The Triton client backend: sends raw text to a ``finsight triton build`` ensemble over HTTP or gRPC.

The server cleans (with the same :func:`~finsight.data.recipe.clean_text` and the model's
recipe) and tokenizes (with the same :class:`~finsight.model.Encoder`), both shipped into the
repository, and returns probabilities in finsight's label order. The local ref's tokenizer
is still used here, for what the other backends report too: token lengths (batches go out
sorted by length, so the server pads little) and the truncation count.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from finsight.errors import BackendError
from finsight.labels import LABELS
from finsight.model.ref import Artifact
from finsight.model.tokenizer import Encoded
from finsight.predict.base import EncoderPredictor, default_batch_size, encoder_for

if TYPE_CHECKING:
    from finsight.config import ModelSettings, PredictSettings, TritonSettings

TEXT, PROBABILITIES = "TEXT", "probabilities"


@dataclass
class TextEncoded(Encoded):
    """:class:`Encoded` plus the texts themselves: what goes to the server."""

    texts: list[str] = field(default_factory=list)


def _client_module(protocol: str):
    from finsight.extras import import_optional

    module = "tritonclient.grpc" if protocol == "grpc" else "tritonclient.http"
    return import_optional(module, needed_by=f"the triton backend ({protocol})", error=BackendError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _quiet_gevent_hub() -> None:
    """A failed request (the server is down) reaches the caller through ``get_result`` as a
    BackendError; gevent's hub would also print its traceback to stderr, outside the server's
    JSON log lines, once per request. This thread's hub only runs this client's greenlets."""
    import gevent

    hub = gevent.get_hub()
    hub.NOT_ERROR = (*hub.NOT_ERROR, Exception)


class TritonClient:
    """One protocol-neutral client of a Triton server: health, metadata, asynchronous infer."""

    def __init__(self, cfg: TritonSettings):
        self.protocol = cfg.protocol
        self.url = cfg.url.split("://", 1)[-1]
        self.timeout_s = float(cfg.timeout_s)
        self.concurrency = cfg.concurrency
        self.module = _client_module(self.protocol)
        self._local = threading.local()
        self._clients: list[Any] = []
        self.client  # noqa: B018 - a bad url fails here, at load, not at the first request

    @property
    def client(self) -> Any:
        """This thread's client. The HTTP client runs on gevent, whose connections belong to
        the thread that made them ("Cannot switch to a different thread" from any other):
        ``finsight serve`` loads the predictor on one thread and scores on its worker thread."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._connect()
            self._clients.append(client)
        return client

    def _connect(self) -> Any:
        try:
            if self.protocol == "grpc":
                return self.module.InferenceServerClient(url=self.url)
            _quiet_gevent_hub()
            return self.module.InferenceServerClient(
                url=self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s,
                concurrency=self.concurrency)
        except Exception as exc:  # noqa: BLE001 - tritonclient raises its own and socket errors
            raise BackendError(f"cannot connect to Triton at {self.url} ({self.protocol}): "
                               f"{_first_line(exc)}; check triton.url") from None

    def _call(self, method: str, *args: Any) -> Any:
        kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        return getattr(self.client, method)(*args, **kwargs)

    def ready_model(self, name: str) -> dict[str, Any]:
        """The metadata of model ``name``; one clear error when the server is down or lacks it."""
        try:
            live = self._call("is_server_live")
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"no Triton server answers at {self.url} ({self.protocol}: "
                               f"{_first_line(exc)}); start one on a finsight triton build "
                               "repository or set triton.url / triton.protocol") from None
        try:
            ready = live and self._call("is_model_ready", name)
            metadata = self._call("get_model_metadata", name) if ready else None
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"Triton at {self.url}: model '{name}': {_first_line(exc)}") from None
        if not ready:
            raise BackendError(f"Triton at {self.url} has no ready model '{name}'; check "
                               "triton.model_name and the server's model repository")
        if self.protocol == "grpc":
            from google.protobuf.json_format import MessageToDict

            metadata = MessageToDict(metadata, preserving_proto_field_name=True)
        return metadata

    def model_parameters(self, name: str) -> dict[str, str]:
        """String parameters of model ``name``'s config ({} when it has none or is absent)."""
        try:
            config = self._call("get_model_config", name)
        except Exception:  # noqa: BLE001 - a hand-made ensemble may lack the tokenizer model
            return {}
        if self.protocol == "grpc":
            from google.protobuf.json_format import MessageToDict

            config = MessageToDict(config.config, preserving_proto_field_name=True)
        return {k: str(v.get("string_value", "")) for k, v in (config.get("parameters") or {}).items()}

    def infer(self, model: str, texts: np.ndarray) -> Callable[[], np.ndarray]:
        """Send one batch (``(n, 1)`` object array of utf-8 bytes); the returned function waits
        for its ``probabilities``."""
        item = self.module.InferInput(TEXT, list(texts.shape), "BYTES")
        item.set_data_from_numpy(texts)
        outputs = [self.module.InferRequestedOutput(PROBABILITIES)]
        try:
            if self.protocol == "grpc":
                future: Future = Future()
                self.client.async_infer(
                    model, [item], lambda result, error: future.set_exception(error) if error
                    else future.set_result(result), outputs=outputs, client_timeout=self.timeout_s)
                wait = lambda: future.result(self.timeout_s * 2)  # noqa: E731 - the RPC's own timeout fires first
            else:
                request = self.client.async_infer(model, [item], outputs=outputs)
                wait = lambda: request.get_result(timeout=self.timeout_s)  # noqa: E731
        except Exception as exc:  # noqa: BLE001
            raise self._failed(model, exc) from None

        def result() -> np.ndarray:
            try:
                return np.asarray(wait().as_numpy(PROBABILITIES), dtype=np.float32)
            except Exception as exc:  # noqa: BLE001
                raise self._failed(model, exc) from None

        return result

    def _failed(self, model: str, exc: BaseException) -> BackendError:
        return BackendError(f"Triton inference on '{model}' at {self.url} ({self.protocol}) failed: "
                            f"{_first_line(exc)}")

    def close(self) -> None:
        for client in self._clients:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass


class TritonPredictor(EncoderPredictor):
    name = "triton"

    def __init__(self, artifact: Artifact, predict: PredictSettings, *, model: ModelSettings,
                 triton: TritonSettings):
        self.model_name = triton.model_name
        self.client = TritonClient(triton)
        metadata = self.client.ready_model(triton.model_name)
        inputs = [i["name"] for i in metadata.get("inputs", [])]
        outputs = [o["name"] for o in metadata.get("outputs", [])]
        if inputs != [TEXT] or PROBABILITIES not in outputs:
            raise BackendError(f"Triton model '{triton.model_name}' at {self.client.url} takes {inputs} "
                               f"and gives {outputs}, not {TEXT} -> {PROBABILITIES}; point "
                               "triton.model_name at an ensemble written by finsight triton build")
        encoder = encoder_for(artifact, model)
        tokenizer_params = self.client.model_parameters(f"{triton.model_name}_tokenizer")
        served = tokenizer_params.get("max_length")
        if served and int(served) != encoder.max_length:
            raise BackendError(f"Triton's {triton.model_name}_tokenizer truncates at {served} tokens but "
                               f"{artifact.location} at {encoder.max_length}; pass the model the "
                               "repository was built from")
        self._check_cleaning(artifact, tokenizer_params)
        batch_size = min(default_batch_size(predict, "cpu"), triton.max_batch_size)
        self._concurrency = triton.concurrency
        self._in_flight: deque[_Pending] = deque()
        super().__init__(encoder=encoder, order=np.arange(len(LABELS)), batch_size=batch_size,
                         source=f"triton+{self.client.protocol}://{self.client.url}/{triton.model_name}",
                         cleaning=artifact.cleaning)

    def _check_cleaning(self, artifact: Artifact, params: dict[str, str]) -> None:
        """The server's tokenizer model must clean as the local model's recipe says. A repository
        built before recipes were recorded does not clean at all: the texts sent are cleaned
        here, so it still scores what the other backends score."""
        import json

        served = params.get("cleaning")
        if not served:
            return
        wanted = artifact.cleaning.as_dict()
        try:
            recorded = json.loads(served)
        except ValueError:
            recorded = served
        if recorded != wanted:
            raise BackendError(f"Triton's {self.model_name}_tokenizer cleans texts with {served} but "
                               f"{artifact.location} was trained with {json.dumps(wanted)}; pass the "
                               "model the repository was built from, or rebuild it")

    def encode(self, texts: Sequence[str]) -> TextEncoded:
        # The cleaned texts go to the server: its tokenizer model cleans them again, which
        # changes nothing (clean_text of a cleaned text is that text).
        cleaned = self.clean(texts)
        encoded = self.encoder.encode(cleaned)
        return TextEncoded(ids=encoded.ids, lengths=encoded.lengths, truncated=encoded.truncated,
                           texts=cleaned)

    def _batches(self, encoded: Encoded, order: np.ndarray) -> Iterator[np.ndarray]:
        texts = getattr(encoded, "texts", None)
        if texts is None or len(texts) != len(encoded):
            raise BackendError("the triton backend sends raw text: score what its encode() "
                               "returned (token ids alone cannot be sent)")
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            yield np.array([[texts[i].encode("utf-8")] for i in rows], dtype=object)

    def _forward(self, batch: np.ndarray) -> "_Pending":
        # At most triton.concurrency requests in flight: the rest wait here, so a request's
        # timeout counts its own time on the server, not a queue of this call's batches.
        while len(self._in_flight) >= self._concurrency:
            try:
                self._in_flight.popleft().result()
            except BackendError:  # an earlier call's failure, raised to that call already
                pass
        pending = _Pending(self.client.infer(self.model_name, batch))
        self._in_flight.append(pending)
        return pending

    def _finish(self, outputs: list["_Pending"]) -> np.ndarray:
        return np.concatenate([pending.result() for pending in outputs]).astype(np.float32, copy=False)


class _Pending:
    """One request's result, fetched once."""

    def __init__(self, wait: Callable[[], np.ndarray]):
        self._wait, self._value = wait, None

    def result(self) -> np.ndarray:
        if self._value is None:
            self._value = self._wait()
        return self._value
