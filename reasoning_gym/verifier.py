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
- The child processes form a pool (``workers``, default min(4, CPUs)) shared by
  the threads of a process: concurrent checks run in parallel, each on its own
  worker, so one that hangs until its timeout holds one worker and delays no
  other check. Workers start on demand (a single thread uses one); a killed
  worker's replacement starts at once in the background. `Verifier.close` (and
  interpreter exit) kills every worker, busy, idle or still starting.
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

__all__ = ["Verifier", "answers_match", "default_verifier", "default_workers"]

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
    """One child Python process running `_worker_main`; used by one thread at a time (the pool hands it out).

    `registry`, the pool's state, lists the process while it starts, so that closing
    the pool kills a worker that is still importing math-verify.
    """

    def __init__(self, startup_timeout_s: float, registry: _PoolState | None = None) -> None:
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
        if registry is not None:
            with registry.cond:
                registry.started_pids.append(self.pid)
                closed = registry.closed
                if not closed:
                    registry.spawning.add(self)
            if closed:
                self.close()
                raise _WorkerFailed("the verifier was closed")
        try:
            line = self._readline(time.monotonic() + startup_timeout_s)
        finally:
            if registry is not None:
                with registry.cond:
                    registry.spawning.discard(self)
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


class _PoolClosed(Exception):
    """The pool was closed (`Verifier.close`, interpreter exit) while a check waited or ran."""


class _PoolState:
    """A pool's mutable state, shared with its finalizer (which must not hold the pool itself).

    Every field is read and written under `cond`.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.cond = threading.Condition()  # an RLock inside: the finalizer may run in a thread holding it
        self.all: set[_Worker] = set()  # started and not discarded (idle or busy)
        self.idle: list[_Worker] = []
        self.spawning: set[_Worker] = set()  # processes still importing math-verify
        self.started_pids: list[int] = []  # every process this pool started (for tests and monitoring)
        self.starting = 0  # starts in progress (background threads)
        self.waiting = 0  # threads in `_acquire` without a worker
        self.failures = 0  # failed starts so far
        self.last_error = ""
        self.closed = False


def _shutdown(state: _PoolState) -> None:
    """Close a pool: kill every worker, busy, idle or still starting. Idempotent."""
    if os.getpid() != state.pid:  # a forked child must never kill its parent's workers
        return
    with state.cond:
        state.closed = True
        workers, idle, spawning = list(state.all), list(state.idle), list(state.spawning)
        state.all.clear()
        state.idle.clear()
        state.cond.notify_all()
    for worker in workers:
        if worker in idle:
            worker.close()
        else:  # busy in another thread, which will see end of file and close the pipes
            worker.kill()
    for worker in spawning:  # its starting thread sees end of file and closes the pipes
        worker.kill()


class _WorkerPool:
    """Up to `size` worker processes shared by all threads of one process.

    A check takes an idle worker; when none is idle it starts one (while fewer
    than `size` are alive or starting) or waits for one to be released. So a
    check that hangs holds one worker until its timeout and the others keep
    serving. A worker that timed out or died is killed and reaped, and a
    replacement starts at once in the background, so the next check does not pay
    math-verify's import. Workers start on demand: one thread checking
    sequentially uses one worker.

    Starts run in daemon threads (``verifier-worker-start``) that put the new worker
    in the idle list; a thread waiting for a worker takes whichever comes first, a
    released worker or a new one.
    """

    def __init__(self, size: int, startup_timeout_s: float) -> None:
        self.size = max(1, size)
        self.startup_timeout_s = startup_timeout_s
        self._s = _PoolState()
        self.pid = self._s.pid
        self._finalizer = weakref.finalize(self, _shutdown, self._s)

    # --- starting workers ----------------------------------------------------------

    def _start_locked(self) -> None:
        """Start one worker in the background (the caller holds the condition)."""
        self._s.starting += 1
        try:
            threading.Thread(target=self._start, name="verifier-worker-start", daemon=True).start()
        except BaseException:  # RuntimeError: can't start new thread (at interpreter exit)
            self._s.starting -= 1
            raise

    def _start(self) -> None:
        s = self._s
        worker: _Worker | None = None
        error = ""
        try:
            worker = _Worker(self.startup_timeout_s, s)
        except _WorkerFailed as failure:
            error = str(failure)
        except BaseException as failure:  # noqa: BLE001  (never let a start die silently: waiters count on it)
            error = f"cannot start a verifier worker: {failure!r}"
        with s.cond:
            s.starting -= 1
            if worker is not None and not s.closed and os.getpid() == s.pid:
                s.all.add(worker)
                s.idle.append(worker)
                worker = None
            elif worker is None:
                s.failures += 1
                s.last_error = error
            s.cond.notify_all()
        if worker is not None:  # started after the pool was closed
            worker.close()

    # --- lending workers -------------------------------------------------------------

    def _acquire(self) -> _Worker:
        """An idle worker, taken; waits for one (starting one when the pool has room).

        Raises _PoolClosed when the pool closes meanwhile, and _WorkerFailed when
        starts failed since this call began and no worker is alive or starting.
        """
        s = self._s
        with s.cond:
            failures_seen = s.failures
            s.waiting += 1
            try:
                while True:
                    if s.closed:
                        raise _PoolClosed
                    while s.idle:
                        worker = s.idle.pop()
                        if worker.alive():
                            return worker
                        s.all.discard(worker)  # died while idle: reap it; its pipes close with it
                        worker.close()
                    if s.failures != failures_seen and not s.all and not s.starting:
                        raise _WorkerFailed(s.last_error)
                    # Start one unless the starts in flight already cover every waiting thread.
                    if len(s.all) + s.starting < self.size and s.starting < s.waiting:
                        self._start_locked()
                    s.cond.wait()
            finally:
                s.waiting -= 1

    def _release(self, worker: _Worker) -> None:
        s = self._s
        with s.cond:
            if s.closed or worker not in s.all:  # the pool was closed while the check ran
                doomed = True
            else:
                doomed = False
                s.idle.append(worker)
            s.cond.notify_all()
        if doomed:
            worker.close()

    def _discard(self, worker: _Worker, replace: bool) -> None:
        """Kill `worker` (timed out, died, state unknown); with `replace`, start its successor."""
        worker.close()
        s = self._s
        with s.cond:
            s.all.discard(worker)
            if replace and not s.closed and len(s.all) + s.starting < self.size:
                self._start_locked()
            s.cond.notify_all()

    def check(self, pred: str, gold: str, rel_tol: float | None, abs_tol: float, timeout_s: float) -> bool:
        """math-verify on one worker under `timeout_s`; False on timeout or crash.

        Raises _PoolClosed when the pool is closed before the check ends (no result).
        """
        for attempt in range(2):
            worker = self._acquire()
            try:
                result = worker.check(pred, gold, rel_tol, abs_tol, timeout_s)
            except _WorkerFailed as error:
                self._discard(worker, replace=True)
                if self._s.closed:
                    raise _PoolClosed from None
                if isinstance(error, _WorkerGone) and attempt == 0:
                    continue  # died while idle: retry once on a fresh worker
                return False
            except BaseException:  # KeyboardInterrupt mid-check: the worker's state is unknown
                self._discard(worker, replace=False)
                raise
            self._release(worker)
            return result
        return False

    def warm_up(self, count: int | None = None) -> None:
        """Start workers until `count` (default: the pool's size) are alive, and wait for them.

        Raises _WorkerFailed when none could be started.
        """
        target = self.size if count is None else max(1, min(count, self.size))
        s = self._s
        with s.cond:
            while not s.closed and len(s.all) + s.starting < target:
                self._start_locked()
            while not s.closed and s.starting and len(s.all) < target:
                s.cond.wait()
            if not s.closed and not s.all:
                raise _WorkerFailed(s.last_error or "no verifier worker could be started")

    # --- inspection and shutdown -------------------------------------------------------

    def worker_pids(self) -> list[int]:
        with self._s.cond:
            return sorted(worker.pid for worker in self._s.all)

    def after_fork_in_child(self) -> None:
        """In a forked child: drop our copies of the parent's pipes (the workers stay the parent's)."""
        s = self._s
        for worker in list(s.all) + list(s.spawning):  # no lock: another thread of the parent may have held it
            for stream in (worker.proc.stdin, worker.proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass

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
            self.pool.after_fork_in_child()
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
        workers: size of the pool of child processes shared by the threads of
            this process (default `default_workers()`: min(4, CPUs available)).
            Workers start on demand, one per concurrent slow-path check, so a
            single thread uses one; a check that hangs holds only its own worker.
        startup_timeout_s: how long to wait for a new worker to import math-verify
            (not counted in `timeout_s`).

    Why a child process: math-verify's own timeouts use ``signal.alarm`` (main
    thread only), and a thread cannot be stopped, nor even waited for with a
    timeout while sympy holds the GIL in a long C call (``9^{9^{9^{9}}}``).
    A process can always be killed. Why a pool: with one worker, every grading
    thread queued behind it, and one comparison that ran into the timeout stalled
    them all for `timeout_s`.
    """

    timeout_s: float = 2.0
    default_rel_tol: float | None = None
    abs_tol: float = 1e-6
    max_answer_chars: int = 1000
    cache_size: int = 4096
    workers: int = field(default_factory=lambda: default_workers())
    startup_timeout_s: float = 60.0
    _runtime: _Runtime = field(default_factory=_Runtime, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        if self.cache_size < 0 or self.max_answer_chars < 1 or int(self.workers) != self.workers or self.workers < 1:
            raise ValueError("cache_size must be >= 0, max_answer_chars and workers (an integer) >= 1")
        self.workers = int(self.workers)

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
        if result is None:  # the verifier was closed during the check: no verdict, nothing cached
            return False
        if self.cache_size:
            with runtime.lock:
                runtime.cache[key] = result
                runtime.cache.move_to_end(key)
                while len(runtime.cache) > self.cache_size:
                    runtime.cache.popitem(last=False)
        return result

    __call__ = is_correct

    def _compute(self, predicted: str, gold: str, rel_tol: float | None) -> bool | None:
        """The verdict; None when `close` stopped the worker pool before the check ended."""
        pred_number = _as_number(predicted)
        gold_number = _as_number(gold) if pred_number is not None else None
        if pred_number is not None and gold_number is not None:
            return _numbers_match(pred_number, gold_number, rel_tol, self.abs_tol)
        try:
            return self._pool().check(predicted, gold, rel_tol, self.abs_tol, self.timeout_s)
        except _PoolClosed:
            return None
        except _WorkerFailed as error:  # no worker could be started at all: a broken installation
            raise RuntimeError(f"verifier: {error}") from None

    def _pool(self) -> _WorkerPool:
        runtime = self._runtime
        with runtime.lock:
            if runtime.pool is None or runtime.pool.pid != os.getpid():
                runtime.pool = _WorkerPool(self.workers, self.startup_timeout_s)
            return runtime.pool

    def warm_up(self, workers: int | None = None) -> None:
        """Start `workers` worker processes now (default: the whole pool, `self.workers`), in
        parallel, and wait until they have imported math-verify, so that the first slow
        checks are fast. RuntimeError when no worker can be started."""
        try:
            self._pool().warm_up(workers)
        except _PoolClosed:  # closed from another thread meanwhile: nothing to warm
            pass
        except _WorkerFailed as error:
            raise RuntimeError(f"verifier: {error}") from None

    def worker_pids(self) -> list[int]:
        """Process ids of this verifier's live workers, idle or busy (for monitoring and tests)."""
        pool = self._runtime.pool
        return [] if pool is None or pool.pid != os.getpid() else pool.worker_pids()

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


def default_workers() -> int:
    """The default size of a verifier's worker pool: min(4, CPUs this process may use)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


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
