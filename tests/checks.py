"""The Python tests' tally: check() records one assertion, summary() prints
the closing line and gives the exit status, skip() ends a test that cannot
run here (tests/run.sh counts it as skipped, never as passed)."""
import sys
import threading

SKIP_STATUS = 77  # tests/run.sh: skipped
_lock = threading.Lock()
passed, failures = 0, []


def check(cond, what):
    global passed
    with _lock:
        if cond:
            passed += 1
        else:
            failures.append(what)
            print("FAIL " + what, flush=True)


def summary(name, extra=""):
    """Prints "NAME: P passed, F failed EXTRA"; 0 if something passed and
    nothing failed, else 1 (a test that checked nothing has not passed)."""
    print(f"{name}: {passed} passed, {len(failures)} failed{extra}")
    if passed == 0 and not failures:
        print(f"FAIL {name}: nothing was checked")
        return 1
    return 1 if failures else 0


def skip(reason):
    """Prints "SKIP: reason" and exits with the skip status."""
    print(f"SKIP: {reason}", flush=True)
    sys.exit(SKIP_STATUS)
