"""The runtime: thread count, SIMD level, environment variables, the GIL, concurrency, fork
and interpreter exit."""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import convrs
import reference as ref
from _workloads import long_conv2d

SIMD_LEVELS = ("scalar", "avx2", "avx512", "neon")
RANK = {"scalar": 0, "avx2": 1, "neon": 1, "avx512": 2}
PYTHON_DIR = str(Path(convrs.__file__).resolve().parent.parent)
TESTS_DIR = str(Path(__file__).resolve().parent)


def run_python(code: str, env: dict | None = None, timeout: float = 120, **kw):
    """Run ``code`` in a fresh interpreter that imports this convrs (and the reference)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CONVRS_")}
    full_env["PYTHONPATH"] = os.pathsep.join(
        [PYTHON_DIR, TESTS_DIR, os.environ.get("PYTHONPATH", "")]
    )
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=False,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def python_value(code: str, env: dict | None = None):
    r = run_python(code, env)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


# --- version, threads, SIMD level -------------------------------------------------------


def test_version():
    assert isinstance(convrs.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)*", convrs.__version__)
    cargo = Path(PYTHON_DIR).parent / "Cargo.toml"
    if cargo.exists():
        m = re.search(r'^version\s*=\s*"([^"]+)"', cargo.read_text(), re.MULTILINE)
        assert m and m.group(1) == convrs.__version__


def test_public_names():
    for name in convrs.__all__:
        assert hasattr(convrs, name)
    assert set(convrs.__all__) >= {
        "conv2d", "convolve2d", "correlate2d", "im2col", "col2im", "get_num_threads",
        "set_num_threads", "simd_level", "__version__",
    }  # fmt: skip


def test_simd_level_is_allowed():
    level = convrs.simd_level()
    assert level in SIMD_LEVELS
    assert level == convrs.simd_level()  # fixed for the life of the process
    cap = os.environ.get("CONVRS_SIMD", "").strip().lower()
    if cap:
        assert RANK[level] <= RANK[cap]


def test_set_and_get_num_threads():
    for n in (1, 2, 3, 7, 1024, 1):
        assert convrs.set_num_threads(n) is None
        assert convrs.get_num_threads() == n
    convrs.set_num_threads(np.int64(2))  # any integer type
    assert convrs.get_num_threads() == 2


def test_default_threads_are_the_cpus_this_process_may_use():
    n = int(python_value("import convrs; print(convrs.get_num_threads())"))
    assert n >= 1
    if hasattr(os, "sched_getaffinity"):
        assert n <= len(os.sched_getaffinity(0))


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_default_threads_follow_cpu_affinity():
    code = """
        import os
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        import convrs
        print(convrs.get_num_threads())
    """
    assert python_value(code) == "1"


@pytest.mark.parametrize("value, expected", [("3", 3), (" 2 ", 2), ("1", 1), ("", None)])
def test_convrs_num_threads_env(value, expected):
    code = "import convrs; print(convrs.get_num_threads())"
    n = int(python_value(code, {"CONVRS_NUM_THREADS": value}))
    if expected is None:
        expected = int(python_value(code))
    assert n == expected
    # set_num_threads overrides the environment.
    code = "import convrs; convrs.set_num_threads(5); print(convrs.get_num_threads())"
    assert python_value(code, {"CONVRS_NUM_THREADS": value}) == "5"


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "100000", "2 3"])
def test_convrs_num_threads_env_invalid(value):
    r = run_python("import convrs", {"CONVRS_NUM_THREADS": value})
    assert r.returncode == 1
    assert "ValueError" in r.stderr and "CONVRS_NUM_THREADS" in r.stderr
    assert "Traceback" in r.stderr and "panic" not in r.stderr.lower()


@pytest.mark.parametrize("value", ["sse4", "avx", "AVX-512", "fast", "1"])
def test_convrs_simd_env_invalid(value):
    r = run_python("import convrs", {"CONVRS_SIMD": value})
    assert r.returncode == 1
    assert "ValueError" in r.stderr and "CONVRS_SIMD" in r.stderr
    assert "panic" not in r.stderr.lower()


SIMD_CHECK = """
    import numpy as np, convrs, reference as ref
    print(convrs.simd_level())
    rng = np.random.default_rng(0)
    cases = [
        ((2, 8, 19, 17), (16, 8, 3, 3), dict(padding=1)),
        ((1, 6, 23, 29), (12, 2, 5, 3), dict(stride=(2, 1), dilation=(1, 2), groups=3,
                                             padding="same")),
        ((1, 8, 20, 33), (8, 1, 3, 5), dict(padding=(1, 2), groups=8)),
        ((2, 20, 9, 9), (35, 20, 1, 1), {}),
    ]
    for dtype in (np.float32, np.float64):
        for xs, ws, kw in cases:
            x = rng.standard_normal(xs).astype(dtype)
            w = rng.standard_normal(ws).astype(dtype)
            b = rng.standard_normal(ws[0]).astype(dtype)
            expected = ref.conv2d(x, w, b, **kw)
            magnitude = ref.conv2d(x, w, b, **kw, absolute=True)
            for algorithm in ("auto", "direct", "im2col"):
                for threads in (1, 2):
                    convrs.set_num_threads(threads)
                    y = convrs.conv2d(x, w, b, algorithm=algorithm, **kw)
                    ref.assert_close(y, expected, magnitude, ref.reduction_length(w.shape))
    print("ok")
"""


def _detected_level():
    return python_value("import convrs; print(convrs.simd_level())")


@pytest.mark.parametrize("cap", ["scalar", "avx2", "avx512"])
def test_simd_cap_in_subprocess(cap):
    detected = _detected_level()
    if RANK[detected] < RANK[cap]:
        pytest.skip(f"this CPU lacks {cap} (detected {detected})")
    r = run_python(SIMD_CHECK, {"CONVRS_SIMD": cap})
    assert r.returncode == 0, r.stderr
    level, status = r.stdout.split()
    assert level == cap
    assert status == "ok"


def test_simd_cap_never_raises_the_level():
    detected = _detected_level()
    for cap in ("scalar", "avx2", "avx512", "neon", " AVX2 "):
        level = python_value("import convrs; print(convrs.simd_level())", {"CONVRS_SIMD": cap})
        assert RANK[level] <= RANK[cap.strip().lower()]
        assert RANK[level] <= RANK[detected]
    assert python_value("import convrs; print(convrs.simd_level())", {"CONVRS_SIMD": ""}) == (
        detected
    )


# --- concurrency ----------------------------------------------------------------------------


def _problem(seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 16, 30, 30)).astype(dtype)
    w = rng.standard_normal((16, 16 // (1 + seed % 2), 3, 3)).astype(dtype)
    b = rng.standard_normal(16).astype(dtype)
    algorithm = ("auto", "direct", "im2col")[seed % 3]
    kw = {"padding": 1, "groups": 1 + seed % 2, "algorithm": algorithm}
    return x, w, b, kw


@pytest.mark.parametrize("threads", [1, 2])
def test_many_python_threads_at_once(threads):
    convrs.set_num_threads(threads)
    problems = [_problem(s, (np.float32, np.float64)[s % 2]) for s in range(8)]
    expected = [convrs.conv2d(x, w, b, **kw) for x, w, b, kw in problems]
    for (x, w, b, kw), y in zip(problems[:2], expected[:2]):
        ref.assert_close(y, ref.conv2d(x, w, b, 1, 1, 1, kw["groups"]),
                         ref.conv2d(x, w, b, 1, 1, 1, kw["groups"], absolute=True),
                         ref.reduction_length(w.shape))  # fmt: skip

    def work(i):
        x, w, b, kw = problems[i % len(problems)]
        cols = convrs.im2col(x, 3, padding=1)
        back = convrs.col2im(cols, x.shape[2:], 3, padding=1)
        return i, convrs.conv2d(x, w, b, **kw), cols, back

    with ThreadPoolExecutor(max_workers=6) as ex:
        results = list(ex.map(work, range(48)))
    for i, y, cols, back in results:
        x = problems[i % len(problems)][0]
        np.testing.assert_array_equal(y, expected[i % len(problems)])
        np.testing.assert_array_equal(cols, convrs.im2col(x, 3, padding=1))
        np.testing.assert_array_equal(back, convrs.col2im(cols, x.shape[2:], 3, padding=1))


def test_set_num_threads_while_other_threads_compute():
    x, w, b, kw = _problem(0)
    expected = convrs.conv2d(x, w, b, **kw)
    stop = threading.Event()
    errors = []

    def compute():
        while not stop.is_set():
            try:
                np.testing.assert_array_equal(convrs.conv2d(x, w, b, **kw), expected)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return

    workers = [threading.Thread(target=compute) for _ in range(3)]
    for t in workers:
        t.start()
    for n in [1, 2, 3, 4] * 10:
        convrs.set_num_threads(n)
        time.sleep(0.002)
    stop.set()
    for t in workers:
        t.join(timeout=30)
    assert not errors, errors[0]
    assert not any(t.is_alive() for t in workers)


def _count_during(call):
    """Iterations a pure-Python loop in another thread makes while ``call`` runs; and the
    iterations it makes in the same time when the main thread merely sleeps."""
    counter = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            counter[0] += 1

    def measure(f):
        t = threading.Thread(target=spin)
        counter[0] = 0
        stop.clear()
        t.start()
        time.sleep(0.02)
        start_count, start = counter[0], time.perf_counter()
        f()
        elapsed = time.perf_counter() - start
        count = counter[0] - start_count
        stop.set()
        t.join()
        return count, elapsed

    during, elapsed = measure(call)
    baseline, _ = measure(lambda: time.sleep(elapsed))
    return during, baseline, elapsed


def test_gil_released_during_conv2d():
    convrs.set_num_threads(1)  # leave the second core to the Python thread
    call = long_conv2d(0.4)
    during, baseline, elapsed = _count_during(call)
    assert elapsed > 0.05
    # With the GIL held the loop would not advance at all during the call.
    assert during > 0.2 * baseline, (during, baseline, elapsed)


@pytest.mark.parametrize("what", ["im2col", "col2im", "convolve2d"])
def test_gil_released_during_other_calls(what):
    convrs.set_num_threads(1)
    x = np.random.default_rng(2).standard_normal((2, 64, 128, 128)).astype(np.float32)
    if what == "im2col":

        def call():
            convrs.im2col(x, 3, padding=1)
    elif what == "col2im":
        cols = convrs.im2col(x, 3, padding=1)

        def call():
            convrs.col2im(cols, (128, 128), 3, padding=1)
    else:
        # Grow the image until one call lasts long enough to observe (the planar kernel
        # may be very fast).
        k = np.ones((15, 15))
        rows = 256
        while True:
            img = np.random.default_rng(3).standard_normal((rows, 1024))
            start = time.perf_counter()
            convrs.convolve2d(img, k, "same")
            took = time.perf_counter() - start
            if took >= 0.15 or rows >= 2**14:
                break
            rows = min(int(rows * min(max(0.2 / max(took, 1e-6), 2), 16)), 2**14)

        def call():
            convrs.convolve2d(img, k, "same")

    during, baseline, elapsed = _count_during(call)
    if elapsed < 0.02:
        pytest.skip(f"{what} too fast to observe ({elapsed:.4f} s)")
    assert during > 0.2 * baseline, (during, baseline, elapsed)


# --- fork and exit ------------------------------------------------------------------------


def _fork_child(args):
    x, w, threads = args
    convrs.set_num_threads(threads)
    return convrs.conv2d(x, w, padding=1), convrs.get_num_threads()


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="no fork start method"
)
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_after_using_the_pool():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 16, 48, 48)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    convrs.set_num_threads(2)
    expected = convrs.conv2d(x, w, padding=1)  # large enough to start the worker pool
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        pending = [pool.apply_async(_fork_child, ((x, w, t),)) for t in (2, 1, 3)]
        for res, t in zip(pending, (2, 1, 3)):
            y, n = res.get(timeout=60)  # a hang fails here instead of blocking the suite
            assert n == t
            np.testing.assert_array_equal(y, expected)
    # The parent still works afterwards.
    np.testing.assert_array_equal(convrs.conv2d(x, w, padding=1), expected)


def test_os_fork_in_subprocess():
    """A bare fork() after the pool has run, while it is idle, and while another thread is
    inside a convrs call: the child must compute correctly and exit."""
    code = """
        import os, sys, threading, time, numpy as np, convrs
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2, 16, 48, 48)).astype(np.float32)
        w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
        convrs.set_num_threads(2)
        expected = convrs.conv2d(x, w, padding=1)

        def child_check():
            ok = np.array_equal(convrs.conv2d(x, w, padding=1), expected)
            os._exit(0 if ok else 3)

        def fork_and_wait():
            pid = os.fork()
            if pid == 0:
                child_check()
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status)

        assert fork_and_wait() == 0, "idle pool"
        stop = threading.Event()
        def busy():
            xb = np.broadcast_to(x, (16, *x.shape[1:]))
            while not stop.is_set():
                convrs.conv2d(xb, w, padding=1)
        t = threading.Thread(target=busy)
        t.start()
        time.sleep(0.05)
        codes = [fork_and_wait() for _ in range(5)]
        stop.set()
        t.join()
        assert codes == [0] * 5, codes
        print("ok")
    """
    r = run_python(code, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_another_thread_rebuilds_the_pool():
    """Forks while another thread keeps changing the thread count (so the worker pool is
    rebuilt under its lock): no child may inherit the lock held and hang."""
    code = """
        import os, signal, threading, numpy as np, convrs
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2, 16, 48, 48)).astype(np.float32)
        w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
        expected = convrs.conv2d(x, w, padding=1)
        stop = threading.Event()

        def busy():
            i = 0
            while not stop.is_set():
                convrs.set_num_threads(2 + i % 2)
                i += 1
                convrs.conv2d(x, w, padding=1)

        t = threading.Thread(target=busy)
        t.start()
        failures = []
        for _ in range(150):
            pid = os.fork()
            if pid == 0:
                signal.alarm(5)  # a hung child dies instead of blocking the test
                convrs.set_num_threads(2)
                ok = np.array_equal(convrs.conv2d(x, w, padding=1), expected)
                os._exit(0 if ok else 3)
            _, status = os.waitpid(pid, 0)
            if status != 0:
                failures.append(status)
                break
        stop.set()
        t.join()
        print("failures", failures)
    """
    r = run_python(code, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "failures []", r.stdout


@pytest.mark.parametrize("threads", [1, 2])
def test_interpreter_exits_cleanly_during_a_call(threads):
    """The main thread returns while a daemon thread is inside a long conv2d call."""
    code = f"""
        import threading, time, numpy as np, convrs
        from _workloads import long_conv2d
        convrs.set_num_threads({threads})
        call = long_conv2d(1.0)
        started = threading.Event()

        def long_calls():
            started.set()
            while True:
                call()

        threading.Thread(target=long_calls, daemon=True).start()
        started.wait()
        time.sleep(0.2)
        print("exiting", flush=True)
    """
    r = run_python(code, timeout=60)
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert r.stdout.strip() == "exiting"
    assert "panic" not in r.stderr.lower() and "fatal" not in r.stderr.lower(), r.stderr


def test_interpreter_exits_cleanly_when_calls_end_during_finalization():
    """Daemon threads finish short calls while the interpreter finalizes: a module-level
    object whose ``__del__`` releases the GIL during teardown lets them try to re-attach to
    a finalizing interpreter (CPython < 3.14 would ``pthread_exit`` them there)."""
    code = """
        import os, sys, threading, time, numpy as np, convrs
        x = np.ones((1, 8, 32, 32), np.float32)
        w = np.ones((8, 8, 3, 3), np.float32)
        running = threading.Barrier(5)

        def loop():
            running.wait()
            while True:
                convrs.conv2d(x, w, padding=1)
                convrs.im2col(x, 3)

        class ReleasesGilAtTeardown:
            def __del__(self, time=time, os=os):
                time.sleep(0.2)
                os.write(1, b"finalized\\n")

        sys.modules["_convrs_test_holder"] = ReleasesGilAtTeardown()
        del ReleasesGilAtTeardown
        for _ in range(4):
            threading.Thread(target=loop, daemon=True).start()
        running.wait()
        time.sleep(0.1)
        print("exiting", flush=True)
    """
    for _ in range(3):
        r = run_python(code, timeout=60)
        assert r.returncode == 0, (r.returncode, r.stderr)
        assert r.stdout.split() == ["exiting", "finalized"], r.stdout
        assert "panic" not in r.stderr.lower() and "fatal" not in r.stderr.lower(), r.stderr
