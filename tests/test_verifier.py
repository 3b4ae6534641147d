"""The oracle check: equivalences, tolerances, timeouts from any thread, cache."""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import pytest

from reasoning_gym.problem import Problem
from reasoning_gym.sources.files import load_gsm8k, load_scibench
from reasoning_gym.steps import extract_answer
from reasoning_gym.verifier import Verifier, answers_match, default_verifier, default_workers


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    v = Verifier(timeout_s=2.0)
    v.warm_up()
    yield v
    v.close()


def shared_problems(shared_data: Path) -> list[Problem]:
    return list(load_gsm8k(shared_data / "gsm8k_train_sample.jsonl")) + list(
        load_scibench(shared_data / "scibench_calculus.jsonl")
    )


def close(a: str, b: str, rel_tol: float | None) -> bool:
    x, y = Fraction(a), Fraction(b)
    return x == y or (rel_tol is not None and abs(x - y) <= rel_tol * abs(y))


# --- every shared problem --------------------------------------------------------------


def test_every_shared_gold_answer_is_recognised(shared_data: Path, verifier: Verifier) -> None:
    problems = shared_problems(shared_data)
    assert len(problems) == 142
    for i, problem in enumerate(problems):
        for final_step in (f"The answer is {problem.answer}", f"So the result is $\\boxed{{{problem.answer}}}$."):
            predicted = extract_answer(final_step)
            assert verifier.is_correct(predicted, problem.answer, rel_tol=problem.rel_tol), (problem.id, final_step)
        others = problems[i + 1 :] + problems[:i]
        wrong = next(p.answer for p in others if not close(p.answer, problem.answer, problem.rel_tol))
        predicted = extract_answer(f"The answer is {wrong}")
        assert not verifier.is_correct(predicted, problem.answer, rel_tol=problem.rel_tol), (problem.id, wrong)


# --- equivalences ----------------------------------------------------------------------

EQUIVALENT = [
    ("\\frac{1}{2}", "0.5"),
    ("1/2", "0.5"),
    ("\\dfrac{3}{4}", "0.75"),
    ("$\\frac12$", "1/2"),
    ("0.50", "1/2"),
    ("\\boxed{3}", "3"),
    ("3.0", "3"),
    ("1,000", "1000"),
    ("1,000,000", "1000000"),
    ("7200", "7,200"),
    ("$18", "18"),
    ("\\$18", "18"),
    ("$18$", "18"),
    ("18 dollars", "18"),
    ("12 apples", "12"),
    ("5 \\text{ cm}", "5"),
    ("72.", "72"),
    ("50\\%", "50"),
    ("50%", "0.5"),
    ("-0.5", "-\\frac{1}{2}"),
    ("1e3", "1000"),
    ("\\sqrt{2}", "1.41421356"),
    ("2\\pi", "6.283185307"),
    ("x + 1", "1 + x"),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}"),
    ("x = 3", "3"),
]
DIFFERENT = [
    ("3", "4"),
    ("0.5", "\\frac{1}{3}"),
    ("1,001", "1000"),
    ("18 dollars", "19"),
    ("2 pi", "2"),
    ("\\sqrt{3}", "1.41421356"),
    ("x + 2", "x + 1"),
    ("New York", "New Jersey"),
    ("10.85", "10.8"),
]


@pytest.mark.parametrize(("predicted", "gold"), EQUIVALENT)
def test_equivalent(verifier: Verifier, predicted: str, gold: str) -> None:
    assert verifier.is_correct(predicted, gold)


@pytest.mark.parametrize(("predicted", "gold"), DIFFERENT)
def test_different(verifier: Verifier, predicted: str, gold: str) -> None:
    assert not verifier.is_correct(predicted, gold)


def test_relative_tolerance(verifier: Verifier) -> None:
    assert verifier.is_correct("10.85", "10.8", rel_tol=1e-2)
    assert not verifier.is_correct("11.5", "10.8", rel_tol=1e-2)
    assert verifier.is_correct("1800\\pi", "5654.86677646", rel_tol=1e-2)  # slow path, numeric fallback
    assert not verifier.is_correct("1700\\pi", "5654.86677646", rel_tol=1e-2)
    assert verifier.is_correct("0", "0", rel_tol=1e-2) and verifier.is_correct("0.0", "0")
    assert verifier.is_correct("1e-9", "0", rel_tol=1e-2)  # gold 0: small absolute tolerance
    assert not verifier.is_correct("0.01", "0", rel_tol=1e-2)
    assert not verifier.is_correct("1e-9", "0")  # no tolerance: exact
    assert Verifier(default_rel_tol=0.05).is_correct("104", "100")


@pytest.mark.parametrize("predicted", [None, "", "   ", "\n"])
def test_no_answer_is_incorrect(verifier: Verifier, predicted: str | None) -> None:
    assert not verifier.is_correct(predicted, "5")


def test_long_answers_are_incorrect_without_parsing(verifier: Verifier) -> None:
    start = time.perf_counter()
    assert not verifier.is_correct("1" * 100_000, "1")
    assert not Verifier(max_answer_chars=3).is_correct("1000", "1000")
    assert time.perf_counter() - start < 0.1


def test_module_level_helpers() -> None:
    assert default_verifier() is default_verifier()
    assert answers_match("1,000", "1000") and not answers_match(None, "1")
    assert answers_match("10.85", "10.8", rel_tol=1e-2)


# --- threads, timeouts, processes ------------------------------------------------------


def test_from_a_thread(verifier: Verifier) -> None:
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(verifier.is_correct("\\frac{6}{4}", "1.5000001", rel_tol=1e-3)))
    thread.start()
    thread.join(10)
    assert results == [True]
    thread = threading.Thread(target=lambda: results.append(verifier.is_correct("\\sqrt{4}", "2")))
    thread.start()
    thread.join(10)
    assert results == [True, True]


def test_from_a_thread_pool() -> None:
    verifier = Verifier(workers=2, cache_size=0)
    pairs = [(f"\\frac{{{2 * k}}}{{2}}", str(k)) for k in range(1, 9)] + [(f"\\sqrt{{{k * k}}}", str(k + 1)) for k in range(1, 9)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda pair: verifier.is_correct(*pair), pairs))
    assert results == [True] * 8 + [False] * 8
    assert 1 <= len(verifier.worker_pids()) <= 2
    verifier.close()


def _no_zombie(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" not in status.read_text()


def test_hanging_comparison_times_out_and_worker_restarts() -> None:
    verifier = Verifier(timeout_s=0.5, workers=1)
    verifier.warm_up()
    (old_pid,) = verifier.worker_pids()
    start = time.perf_counter()
    assert not verifier.is_correct("9^{9^{9^{9}}}", "1")  # sympy would try to evaluate this for ever
    assert time.perf_counter() - start < 2.0
    assert old_pid not in verifier.worker_pids()  # killed ...
    if sys.platform.startswith("linux"):
        assert _no_zombie(old_pid)  # ... and reaped
    assert verifier.is_correct("\\sqrt{9}", "3")  # a fresh worker
    assert verifier.worker_pids() and verifier.worker_pids()[0] != old_pid
    start = time.perf_counter()
    assert not verifier.is_correct("9^{9^{9^{9}}}", "1")  # timeouts are cached
    assert time.perf_counter() - start < 0.01
    verifier.close()


@pytest.fixture(scope="module")
def permissive() -> Verifier:
    """No length limit, so that pathological strings reach math-verify."""
    v = Verifier(timeout_s=0.5, max_answer_chars=10**7)
    yield v
    v.close()


@pytest.mark.parametrize(
    "text",
    ["\\frac{" * 10_000, "1" * 100_000, "{" * 5_000 + "}" * 5_000, "\\sqrt{" * 3_000 + "2" + "}" * 3_000, "(" * 5000 + "1"],
    ids=["frac", "digits", "braces", "sqrt", "parens"],
)
def test_pathological_inputs_return_false_quickly(permissive: Verifier, text: str) -> None:
    start = time.perf_counter()
    assert not permissive.is_correct(text, "1")
    assert not permissive.is_correct("1", text)  # a pathological gold too
    assert time.perf_counter() - start < 4.0
    assert permissive.is_correct("\\sqrt{4}", "2")  # and the verifier still works afterwards


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_works_after_fork(verifier: Verifier) -> None:
    assert verifier.is_correct("\\sqrt{16}", "4")  # the parent's worker is running
    parent_pids = verifier.worker_pids()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must start its own worker, never touch the parent's
        try:
            ok = verifier.is_correct("\\sqrt{25}", "5") and not verifier.is_correct("\\sqrt{25}", "6")
            ok = ok and not set(verifier.worker_pids()) & set(parent_pids)
            verifier.close()
            os.write(write_end, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    assert os.read(read_end, 1) == b"1"
    os.close(read_end)
    assert verifier.worker_pids() == parent_pids  # the child did not kill our worker
    assert verifier.is_correct("\\sqrt{36}", "6")


def test_cache_hit_is_fast(verifier: Verifier) -> None:
    assert verifier.is_correct("\\sqrt{49}", "7")
    start = time.perf_counter()
    for _ in range(1000):
        assert verifier.is_correct("\\sqrt{49}", "7")
    assert (time.perf_counter() - start) / 1000 < 1e-4


def test_cache_is_bounded() -> None:
    verifier = Verifier(cache_size=3)
    for k in range(10):
        verifier.is_correct(str(k), str(k))
    assert len(verifier._runtime.cache) == 3


def test_fast_path_does_not_start_a_worker() -> None:
    verifier = Verifier()
    assert verifier.is_correct("$1,234.50", "1234.5") and not verifier.is_correct("3", "4")
    assert verifier.worker_pids() == []


def test_pickle_keeps_settings() -> None:
    verifier = Verifier(timeout_s=3.0, default_rel_tol=0.01, workers=3)
    copy = pickle.loads(pickle.dumps(verifier))
    assert (copy.timeout_s, copy.default_rel_tol, copy.workers) == (3.0, 0.01, 3)
    assert copy.is_correct("10.85", "10.8")


# --- the pool of workers ---------------------------------------------------------------

HANG = "9^{9^{9^{9}}}"  # sympy would evaluate this for ever: the check runs into its timeout


def _gone(pid: int) -> bool:
    """The process has exited (a zombie left to a reaper that is not us counts as gone)."""
    if sys.platform.startswith("linux"):
        status = Path(f"/proc/{pid}/status")
        try:
            return "zombie" in status.read_text()
        except FileNotFoundError:
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_pool_size_option() -> None:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    assert default_workers() == max(1, min(4, cpus))
    assert Verifier().workers == default_workers()
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="workers"):
            Verifier(workers=bad)
    verifier = Verifier(workers=3, cache_size=0)
    try:
        assert verifier.is_correct("\\sqrt{4}", "2") and verifier.is_correct("\\sqrt{9}", "3")
        assert len(verifier.worker_pids()) == 1  # on demand: one thread checking in turn uses one worker
        verifier.warm_up()
        assert len(verifier.worker_pids()) == 3  # the whole pool
        pairs = [(f"\\sqrt{{{k * k}}}", str(k)) for k in range(2, 14)]
        with ThreadPoolExecutor(max_workers=8) as threads:  # more threads than workers: they share the three
            assert all(threads.map(lambda pair: verifier.is_correct(*pair), pairs))
        assert len(verifier.worker_pids()) == 3
    finally:
        verifier.close()


def _hang_then_fast(verifier: Verifier) -> tuple[float, bool, list[bool]]:
    """Start a hanging check in one thread; once it holds a worker, time a fast slow-path
    check from this thread. Returns (seconds of the fast check, whether the hanging check
    was still running when it returned, [the hanging check's result])."""
    hung: list[bool] = []
    thread = threading.Thread(target=lambda: hung.append(verifier.is_correct(HANG, "1")))
    pool = verifier._runtime.pool
    idle_before = len(pool._s.idle)
    thread.start()
    assert _wait_for(lambda: len(pool._s.idle) == idle_before - 1, 10)  # the hanging check took a worker
    start = time.perf_counter()
    assert verifier.is_correct("\\frac{\\sqrt{16}}{2}", "2")  # math-verify, not the plain-number path
    seconds = time.perf_counter() - start
    overlapped = thread.is_alive()
    thread.join(30)
    return seconds, overlapped, hung


def test_a_hanging_check_does_not_delay_a_concurrent_one() -> None:
    timeout = 4.0
    verifier = Verifier(timeout_s=timeout, workers=2, cache_size=0)
    try:
        verifier.warm_up()
        old_pids = verifier.worker_pids()
        assert len(old_pids) == 2
        seconds, overlapped, hung = _hang_then_fast(verifier)
        # Typically tens of milliseconds; the bound only needs to tell "served by the
        # other worker" from "queued behind the hanging one" (4 s).
        assert seconds < timeout / 2, seconds
        assert overlapped  # the fast check really ran while the other one hung
        assert hung == [False]  # the hanging check timed out: incorrect
        # The hung worker was killed and reaped, and a replacement starts in the background.
        killed = set(old_pids) - set(verifier.worker_pids())
        assert len(killed) == 1 and all(_gone(pid) for pid in killed)
        assert _wait_for(lambda: len(verifier.worker_pids()) == 2, 60)
        assert not killed & set(verifier.worker_pids())
        assert verifier.is_correct("\\sqrt{25}", "5")
    finally:
        verifier.close()


def test_one_worker_queues_behind_a_hanging_check() -> None:
    """The contrast that makes the test above meaningful: with one worker (the old
    behaviour) a concurrent check waits for the hanging one's timeout."""
    timeout = 1.0
    verifier = Verifier(timeout_s=timeout, workers=1, cache_size=0)
    try:
        verifier.warm_up()
        seconds, overlapped, hung = _hang_then_fast(verifier)
        assert hung == [False]
        assert seconds >= 0.5 * timeout, seconds
    finally:
        verifier.close()


def test_close_leaves_no_process_behind() -> None:
    verifier = Verifier(workers=2)
    verifier.warm_up()
    pids = verifier.worker_pids()
    assert len(pids) == 2
    verifier.close()
    assert verifier.worker_pids() == []
    assert all(_gone(pid) for pid in pids)
    assert verifier.is_correct("\\sqrt{4}", "2")  # a later check starts a new pool
    verifier.close()


def test_close_kills_workers_that_are_still_starting() -> None:
    verifier = Verifier(workers=2)
    warming = threading.Thread(target=verifier.warm_up)
    warming.start()
    assert _wait_for(lambda: verifier._runtime.pool is not None, 10)
    state = verifier._runtime.pool._s
    assert _wait_for(lambda: len(state.started_pids) == 2, 10)  # processes exist, importing math-verify
    verifier.close()
    warming.join(30)
    assert not warming.is_alive()
    assert _wait_for(lambda: all(_gone(pid) for pid in state.started_pids), 10)
    assert _wait_for(lambda: state.starting == 0, 30)  # the start threads saw the kill and gave up
    assert not state.all and not state.idle and not state.spawning


def test_a_check_during_close_is_not_cached_as_wrong() -> None:
    verifier = Verifier(timeout_s=10.0, workers=1)
    verifier.warm_up()
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(verifier.is_correct(HANG, "1")))
    pool = verifier._runtime.pool
    thread.start()
    assert _wait_for(lambda: not pool._s.idle, 10)
    verifier.close()  # kills the busy worker: the check ends without a verdict
    thread.join(10)
    assert results == [False]
    assert (HANG, "1", None) not in verifier._runtime.cache


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_interpreter_exit_leaves_no_process_behind(tmp_path: Path) -> None:
    """Exit while one worker is busy hanging and another is still starting: neither survives."""
    import subprocess

    script = (
        "import sys, threading, time\n"
        "from reasoning_gym.verifier import Verifier\n"
        "v = Verifier(workers=3, timeout_s=30)\n"
        "v.warm_up(1)\n"
        "threading.Thread(target=v.is_correct, args=('9^{9^{9^{9}}}', '1'), daemon=True).start()\n"
        "threading.Thread(target=v.is_correct, args=('\\\\sqrt{4}', '2'), daemon=True).start()\n"
        "s = v._runtime.pool._s\n"
        "while len(s.started_pids) < 2: time.sleep(0.01)\n"
        "print(' '.join(map(str, s.started_pids)), flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert done.returncode == 0, done.stderr
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) >= 2
    assert _wait_for(lambda: all(_gone(pid) for pid in pids), 10)
