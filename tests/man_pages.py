#!/usr/bin/env python3
"""The man pages (man/gridd.1, man/hgridctl.1, man/hgrid-worker.1, man/hgrid-agent.1) are what
man/man_page.py makes of the programs' --help now: a flag added, removed or
re-described without regenerating the page fails here, naming the command
that regenerates them. Each page names every flag its --help names and
renders without a warning (groff -ww, where groff is installed)."""
import difflib
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BIN = os.environ.get("HGRID_BIN", "bin")
sys.path.insert(0, os.path.join(ROOT, "man"))
import man_page  # noqa: E402


def main():
    for prog in man_page.PAGES:
        path = os.path.join(ROOT, "man", prog + ".1")
        check(os.path.exists(path), f"man/{prog}.1 exists")
        if not os.path.exists(path):
            continue
        have, want = open(path).read(), man_page.page(BIN, prog)
        diff = list(difflib.unified_diff(have.splitlines(), want.splitlines(), f"man/{prog}.1",
                                         f"{prog} --help", lineterm="", n=1))
        check(not diff, f"man/{prog}.1 matches {prog} --help; regenerate with "
                        f"'man/man_page.py {BIN} --write':\n" + "\n".join(diff[:40]))
        helps = man_page.help_of(BIN, prog)
        if prog == "hgridctl":
            helps += "".join(man_page.help_of(BIN, prog, c) for c in man_page.ctl_commands(BIN))
        flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", helps))
        text = have.replace("\\-", "-")
        missing = sorted(f for f in flags if f not in text)
        check(len(flags) > 5 and not missing,
              f"man/{prog}.1 names the {len(flags)} flags of its --help; missing {missing}")
        if shutil.which("groff"):
            r = subprocess.run(["groff", "-man", "-ww", "-z", path], capture_output=True,
                               text=True)
            check(r.returncode == 0 and r.stderr == "", f"groff renders man/{prog}.1: {r.stderr}")
    return summary("man_pages")


if __name__ == "__main__":
    sys.exit(main())
