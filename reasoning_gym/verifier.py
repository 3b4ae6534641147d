"""The oracle check: is a predicted final answer equivalent to the gold answer?

Contract of `Verifier.is_correct(predicted, gold, rel_tol=None) -> bool`:

- ``predicted`` is an extracted final answer (``"72"``, ``"\\frac{1}{2}"``,
  ``"$18"``, ``"12 apples"``), not a whole solution; ``None``, empty or
  whitespace-only, or longer than ``max_answer_chars``, is incorrect.
- Plain numbers (integers, decimals, scientific notation, ``a/b`` and
  ``\\frac{a}{b}`` with integer parts, optionally with ``$``/``\\$``, thousands
  separators ``1,000``, a trailing ``%`` or unit words such as ``12 apples``) are
  compared without sympy: exactly (as rationals) when no tolerance applies, else
  ``|p - g| <= max(rel_tol * |g|, abs_tol)`` (``abs_tol`` handles gold 0). A
  percentage matches either its value or its value / 100, as in math-verify.
- Everything else goes to math-verify (``parse`` each side, wrapped in
  ``\\boxed{}``, then ``verify(gold, pred)``), with a numeric fallback under
  ``rel_tol`` when both sides evaluate to real numbers.
- The math-verify call runs in a persistent child process under our own
  wall-clock timeout (``timeout_s``): on timeout or crash the child is killed and
  restarted and the answer is judged incorrect. Works from any thread, thread pool
  or forked process; it never raises for malformed input, it returns False.
- Results are cached (LRU on ``(predicted, gold, rel_tol)``), timeouts included.

This module imports only the standard library at import time; math-verify (and
sympy) are imported in the worker process.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import re
import select
import subprocess
import sys
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from fractions import Fraction

__all__ = ["Verifier", "answers_match", "default_verifier"]

# --------------------------------------------------------------------------------------
# Fast path: plain numbers, no sympy.
# --------------------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?(\d+))?")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")
_SLASH_FRACTION = re.compile(r"([+-]?\d+)\s*/\s*(\d+)")
_LATEX_FRACTION = re.compile(r"([+-]?)\\[dt]?frac\s*(?:\{\s*(\d+)\s*\}|(\d))\s*(?:\{\s*(\d+)\s*\}|(\d))")
_BOXED_WHOLE = re.compile(r"\\(?:boxed|fbox)\s*\{(.*)\}", re.DOTALL)
_LATEX_UNIT = re.compile(r"\s*\\(?:text|mathrm|textrm|mbox|operatorname)\s*\{[^{}]*\}\s*$")
_UNIT_WORDS = re.compile(r"(?:\s+[A-Za-z]+(?:/[A-Za-z]+)*\.?)+$")
# Words after a number that are mathematics, not units: never strip them.
_NOT_UNITS = frozenset(
    "pi e i j k n x y z sqrt sin cos tan cot sec csc log ln exp and or to times "
    "infinity inf mod degrees degree".split()
)
_MAX_EXPONENT = 400  # beyond these a "plain" number goes to the (timed) slow path
_MAX_DIGITS = 1000


def _strip_units(text: str) -> str:
    """``"12 apples"`` -> ``"12"``, ``"5 \\text{cm}"`` -> ``"5"``.

    Only words after a number or a closing brace go ("New York" stays), and never
    mathematical words ("2 pi", "3 x").
    """
    stripped = _LATEX_UNIT.sub("", text)
    if stripped.rstrip()[-1:].isdigit() or stripped.rstrip().endswith("}"):
        text = stripped
    match = _UNIT_WORDS.search(text)
    if match and text[: match.start()].rstrip()[-1:] in tuple("0123456789}"):
        words = re.findall(r"[A-Za-z]+", match.group(0))
        if not any(word.lower() in _NOT_UNITS for word in words):
            text = text[: match.start()]
    return text


def _normalize_number_text(text: str) -> tuple[str, bool]:
    """Strip the decorations around a plain number; returns (text, is_percent)."""
    s = text.strip()
    boxed = _BOXED_WHOLE.fullmatch(s)
    if boxed:
        s = boxed.group(1).strip()
    s = s.replace("\u2212", "-").replace("\\$", "").replace("$", "").replace("\\!", "")
    s = s.replace("{,}", ",").replace("\\,", "").replace("\u2009", "").replace("\\ ", " ")
    s = s.strip().rstrip(".").strip()
    s = _strip_units(s).strip()
    percent = False
    for mark in ("\\%", "%"):
        if s.endswith(mark):
            s, percent = s[: -len(mark)].strip(), True
            break
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    return s, percent


def _as_number(text: str) -> tuple[Fraction, bool] | None:
    """The exact value of a plain number written in `text` and whether it is a percentage, or None."""
    s, percent = _normalize_number_text(text)
    if len(s) > _MAX_DIGITS:
        return None
    match = _NUMBER.fullmatch(s)
    if match:
        exponent = match.group(1)
        if exponent is not None and (len(exponent) > 6 or int(exponent) > _MAX_EXPONENT):
            return None
        return Fraction(s), percent
    match = _SLASH_FRACTION.fullmatch(s)
    if match:
        numerator, denominator = int(match.group(1)), int(match.group(2))
    else:
        match = _LATEX_FRACTION.fullmatch(s)
        if not match:
            return None
        sign = -1 if match.group(1) == "-" else 1
        numerator = sign * int(match.group(2) or match.group(3))
        denominator = int(match.group(4) or match.group(5))
    if denominator == 0:
        return None
    return Fraction(numerator, denominator), percent


def _numbers_match(pred: tuple[Fraction, bool], gold: tuple[Fraction, bool], rel_tol: float | None, abs_tol: float) -> bool:
    def readings(value: tuple[Fraction, bool]) -> tuple[Fraction, ...]:
        number, percent = value
        return (number, number / 100) if percent else (number,)

    for p in readings(pred):
        for g in readings(gold):
            if p == g:
                return True
            if rel_tol is not None and abs(p - g) <= max(Fraction(rel_tol) * abs(g), Fraction(abs_tol)):
                return True
    return False


# --------------------------------------------------------------------------------------
# Slow path: math-verify (runs in the worker process).
# --------------------------------------------------------------------------------------


def _prepare_for_parse(text: str) -> str:
    s = text.strip().replace("\\$", "").replace("\u2212", "-")
    if s.count("$") and "\\boxed" not in s:
        s = s.replace("$", "")
    s = s.rstrip(".").strip()
    return _strip_units(s).strip() or s


def _import_math_verify() -> None:
    """Import math-verify and silence its warning that its own (signal-based) timeouts are off."""
    import math_verify.grader
    import math_verify.parser

    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True


def _parse_answer(text: str) -> list:
    from math_verify import parse

    s = _prepare_for_parse(text)
    candidates = (s,) if "\\boxed" in s else ("\\boxed{" + s + "}", "$" + s + "$", s)
    for candidate in candidates:
        parsed = parse(candidate, parsing_timeout=None)
        if parsed:
            return parsed
    return []


def _math_verify_equal(pred: str, gold: str, rel_tol: float | None, abs_tol: float) -> bool:
    """math-verify equivalence, plus a numeric comparison under `rel_tol`. No timeout here."""
    from math_verify import verify

    gold_parsed = _parse_answer(gold)
    pred_parsed = _parse_answer(pred)
    if not gold_parsed or not pred_parsed:
        return False
    if verify(gold_parsed, pred_parsed, timeout_seconds=None):
        return True
    if rel_tol is None:
        return False
    from sympy import Basic

    for g in gold_parsed:
        for p in pred_parsed:
            if not (isinstance(g, Basic) and isinstance(p, Basic) and g.is_number and p.is_number):
                continue
            try:
                gv, pv = complex(g.evalf(30)), complex(p.evalf(30))
            except (TypeError, ValueError, ArithmeticError):
                continue
            if gv.imag == 0 and pv.imag == 0 and math.isfinite(gv.real) and math.isfinite(pv.real):
                if abs(pv.real - gv.real) <= max(rel_tol * abs(gv.real), abs_tol):
                    return True
    return False


def _worker_main() -> None:
    """Serve requests in the child process: one JSON object per line on stdin and stdout."""
    import io
    import logging
    import signal

    protocol_out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the protocol
    sys.stdout = sys.stderr
    if hasattr(signal, "SIGINT"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    parent = os.getppid()

    def watchdog() -> None:  # exit when orphaned, even in the middle of a hung computation
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    if os.name == "posix":
        threading.Thread(target=watchdog, daemon=True).start()
    logging.disable(logging.WARNING)
    _import_math_verify()  # before announcing readiness: the timeout covers checks, not imports

    protocol_out.write('{"ready": true}\n')
    for line in io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8"):
        try:
            request = json.loads(line)
        except ValueError:
            continue
        try:
            ok = _math_verify_equal(request["pred"], request["gold"], request["rel_tol"], request["abs_tol"])
        except BaseException:  # noqa: BLE001  (RecursionError, sympy errors: not equal)
            ok = False
        protocol_out.write(json.dumps({"id": request["id"], "ok": bool(ok)}) + "\n")


# --------------------------------------------------------------------------------------
# The worker process and its pool.
# --------------------------------------------------------------------------------------

_BOOT = (
    "import sys, json, importlib.util\n"
    "sys.path[:] = json.loads(sys.argv[2])\n"
    "spec = importlib.util.spec_from_file_location('_reasoning_gym_verifier_worker', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "sys.modules[spec.name] = module\n"
    "spec.loader.exec_module(module)\n"
    "module._worker_main()\n"
)


class _WorkerFailed(Exception):
    """The worker timed out, died or could not be started."""


class _WorkerGone(_WorkerFailed):
    """The worker had exited before it received the request."""


class _Worker:
    """One child Python process running `_worker_main`; not thread-safe (the pool serialises)."""

    def __init__(self, startup_timeout_s: float) -> None:
        if not sys.executable:
            raise _WorkerFailed("sys.executable is unknown; cannot start a verifier worker")
        kwargs = {"start_new_session": True} if os.name == "posix" else {}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, os.path.abspath(__file__), json.dumps(sys.path)],
                bufsize=0,  # raw pipes: nothing buffered that a forked child could flush
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                **kwargs,
            )
        except OSError as error:
            raise _WorkerFailed(f"cannot start a verifier worker: {error}") from error
        self.pid = self.proc.pid
        self._buffer = b""
        self._next_id = 0
        line = self._readline(time.monotonic() + startup_timeout_s)
        if not line or b"ready" not in line:
            self.close()
            raise _WorkerFailed("the verifier worker did not start (is math-verify installed?)")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self, pred: str, gold: str, rel_tol: float | None, abs_tol: float, timeout_s: float) -> bool:
        self._next_id += 1
        request = {"id": self._next_id, "pred": pred, "gold": gold, "rel_tol": rel_tol, "abs_tol": abs_tol}
        try:
            data = json.dumps(request).encode("ascii") + b"\n"
            while data:
                data = data[self.proc.stdin.write(data) :]
        except (BrokenPipeError, OSError, ValueError) as error:
            raise _WorkerGone("the verifier worker is gone") from error
        deadline = time.monotonic() + timeout_s
        while True:
            line = self._readline(deadline)
            if not line:
                raise _WorkerFailed("timeout" if line is None else "the verifier worker died")
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            if reply.get("id") == self._next_id:
                return bool(reply.get("ok"))

    def _readline(self, deadline: float) -> bytes | None:
        """The next protocol line; None on timeout, b"" on end of file."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if hasattr(select, "poll"):  # not select(): it fails for descriptors >= 1024
                poller = select.poll()
                poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
                try:
                    if not poller.poll(max(1, math.ceil(remaining * 1000))):
                        return None
                    chunk = os.read(fd, 65536)
                except (OSError, ValueError):  # closed under us (interpreter exit)
                    return b""
            else:  # no select() on pipes: read in a helper thread
                box: list[bytes] = []
                reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)
                reader.start()
                reader.join(remaining)
                if not box:
                    return None
                chunk = box[0]
            if not chunk:
                return b""
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def kill(self) -> None:
        """Kill and reap the process (no zombie); safe to call twice and from any thread.

        The pipes stay open: a thread waiting on this worker sees end of file and
        closes them itself (`close`), so no descriptor is closed under its feet.
        """
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        """Kill the process and close the pipes; only by the thread that holds the worker."""
        self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


def _kill_all(workers: set[_Worker], idle: list[_Worker], owner_pid: int) -> None:
    if os.getpid() != owner_pid:  # a forked child must never kill its parent's workers
        return
    for worker in list(workers):
        if worker in idle:
            worker.close()
        else:  # busy in another thread, which will see end of file and close the pipes
            worker.kill()
    workers.clear()
    idle.clear()


class _WorkerPool:
    """Up to `size` workers shared by all threads of one process."""

    def __init__(self, size: int, startup_timeout_s: float) -> None:
        self.size = max(1, size)
        self.startup_timeout_s = startup_timeout_s
        self.pid = os.getpid()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._starting = 0
        self._cond = threading.Condition()
        self._finalizer = weakref.finalize(self, _kill_all, self._all, self._idle, self.pid)

    def _acquire(self) -> _Worker:
        with self._cond:
            while True:
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        return worker
                    self._discard(worker)
                if len(self._all) + self._starting < self.size:
                    self._starting += 1
                    break
                self._cond.wait()
        try:
            worker = _Worker(self.startup_timeout_s)
        finally:
            with self._cond:
                self._starting -= 1
                self._cond.notify()
        with self._cond:
            self._all.add(worker)
        return worker

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            self._idle.append(worker)
            self._cond.notify()

    def _discard(self, worker: _Worker) -> None:
        worker.close()
        with self._cond:
            self._all.discard(worker)
            self._cond.notify()

    def check(self, pred: str, gold: str, rel_tol: float | None, abs_tol: float, timeout_s: float) -> bool:
        for attempt in range(2):
            worker = self._acquire()
            try:
                result = worker.check(pred, gold, rel_tol, abs_tol, timeout_s)
            except _WorkerFailed as error:
                self._discard(worker)
                if isinstance(error, _WorkerGone) and attempt == 0:
                    continue  # died while idle: retry once on a fresh worker
                return False
            except BaseException:  # KeyboardInterrupt mid-check: the worker's state is unknown
                self._discard(worker)
                raise
            self._release(worker)
            return result
        return False

    def warm_up(self) -> None:
        self._release(self._acquire())

    def close(self) -> None:
        self._finalizer()


# --------------------------------------------------------------------------------------
# The public API.
# --------------------------------------------------------------------------------------


class _Runtime:
    """Per-verifier mutable state (cache, locks, workers): rebuilt after fork, never pickled."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cache: OrderedDict[tuple[str, str, float | None], bool] = OrderedDict()
        self.pool: _WorkerPool | None = None
        _RUNTIMES.add(self)

    def after_fork_in_child(self) -> None:
        self.lock = threading.Lock()
        if self.pool is not None:  # the parent's workers stay the parent's: drop our copies of their pipes
            for worker in list(self.pool._all):
                for stream in (worker.proc.stdin, worker.proc.stdout):
                    try:
                        stream.close()
                    except OSError:
                        pass
        self.pool = None


_RUNTIMES: weakref.WeakSet[_Runtime] = weakref.WeakSet()


@dataclass(eq=False)
class Verifier:
    """Judges predicted final answers against oracle answers (see the module docstring).

    Attributes:
        timeout_s: wall-clock limit for one math-verify comparison; past it the
            answer is judged incorrect and the worker process is restarted.
        default_rel_tol: relative tolerance used when `is_correct` gets none.
        abs_tol: absolute tolerance applied with a relative one (for gold 0).
        max_answer_chars: longer predicted answers are incorrect without parsing.
        cache_size: entries in the LRU cache of results (0 disables it).
        workers: child processes shared by the threads of this process.
        startup_timeout_s: how long to wait for a new worker to import math-verify
            (not counted in `timeout_s`).

    Why a child process: math-verify's own timeouts use ``signal.alarm`` (main
    thread only), and a thread cannot be stopped, nor even waited for with a
    timeout while sympy holds the GIL in a long C call (``9^{9^{9^{9}}}``).
    A process can always be killed.
    """

    timeout_s: float = 2.0
    default_rel_tol: float | None = None
    abs_tol: float = 1e-6
    max_answer_chars: int = 1000
    cache_size: int = 4096
    workers: int = 1
    startup_timeout_s: float = 60.0
    _runtime: _Runtime = field(default_factory=_Runtime, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        if self.cache_size < 0 or self.max_answer_chars < 1 or self.workers < 1:
            raise ValueError("cache_size must be >= 0, max_answer_chars and workers >= 1")

    def is_correct(self, predicted: str | None, gold: str, rel_tol: float | None = None) -> bool:
        """True when `predicted` is equivalent to `gold` (within `rel_tol`, else `default_rel_tol`)."""
        if not isinstance(predicted, str) or not predicted.strip() or not isinstance(gold, str) or not gold.strip():
            return False
        if len(predicted) > self.max_answer_chars:
            return False
        tolerance = self.default_rel_tol if rel_tol is None else rel_tol
        tolerance = None if tolerance is None else float(tolerance)
        key = (predicted, gold, tolerance)
        runtime = self._runtime
        if self.cache_size:
            with runtime.lock:
                cached = runtime.cache.get(key)
                if cached is not None:
                    runtime.cache.move_to_end(key)
                    return cached
        result = self._compute(predicted, gold, tolerance)
        if self.cache_size:
            with runtime.lock:
                runtime.cache[key] = result
                runtime.cache.move_to_end(key)
                while len(runtime.cache) > self.cache_size:
                    runtime.cache.popitem(last=False)
        return result

    __call__ = is_correct

    def _compute(self, predicted: str, gold: str, rel_tol: float | None) -> bool:
        pred_number = _as_number(predicted)
        gold_number = _as_number(gold) if pred_number is not None else None
        if pred_number is not None and gold_number is not None:
            return _numbers_match(pred_number, gold_number, rel_tol, self.abs_tol)
        try:
            return self._pool().check(predicted, gold, rel_tol, self.abs_tol, self.timeout_s)
        except _WorkerFailed as error:  # no worker could be started at all: a broken installation
            raise RuntimeError(f"verifier: {error}") from None

    def _pool(self) -> _WorkerPool:
        runtime = self._runtime
        with runtime.lock:
            if runtime.pool is None or runtime.pool.pid != os.getpid():
                runtime.pool = _WorkerPool(self.workers, self.startup_timeout_s)
            return runtime.pool

    def warm_up(self) -> None:
        """Start a worker now (it imports math-verify), so the first slow check is fast."""
        try:
            self._pool().warm_up()
        except _WorkerFailed as error:
            raise RuntimeError(f"verifier: {error}") from None

    def worker_pids(self) -> list[int]:
        """Process ids of this verifier's live workers (for monitoring and tests)."""
        pool = self._runtime.pool
        return [] if pool is None or pool.pid != os.getpid() else sorted(w.pid for w in pool._all)

    def clear_cache(self) -> None:
        with self._runtime.lock:
            self._runtime.cache.clear()

    def close(self) -> None:
        """Stop the worker processes (a later check starts new ones)."""
        with self._runtime.lock:
            pool, self._runtime.pool = self._runtime.pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Pickling and copying keep the settings and start from a fresh runtime.
    def __getstate__(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._runtime = _Runtime()


_DEFAULT: Verifier | None = None
_DEFAULT_LOCK = threading.Lock()


def default_verifier() -> Verifier:
    """The process-wide shared `Verifier` with default settings."""
    global _DEFAULT
    if _DEFAULT is None:
        with _DEFAULT_LOCK:
            if _DEFAULT is None:
                _DEFAULT = Verifier()
    return _DEFAULT


def answers_match(predicted: str | None, gold: str, rel_tol: float | None = None) -> bool:
    """`default_verifier().is_correct(predicted, gold, rel_tol)`."""
    return default_verifier().is_correct(predicted, gold, rel_tol)


def _after_fork_in_child() -> None:
    global _DEFAULT_LOCK
    _DEFAULT_LOCK = threading.Lock()
    for runtime in list(_RUNTIMES):
        runtime.after_fork_in_child()


def _close_all_at_exit() -> None:
    for runtime in list(_RUNTIMES):
        pool = runtime.pool
        if pool is not None and pool.pid == os.getpid():
            pool.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all_at_exit)
