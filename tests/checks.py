"""The Python tests' tally: check() records one assertion, summary() prints
the closing line and gives the exit status."""
import threading

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
    """Prints "NAME: P passed, F failed EXTRA"; 0 if nothing failed, else 1."""
    print(f"{name}: {passed} passed, {len(failures)} failed{extra}")
    return 1 if failures else 0
