#!/usr/bin/env python3
"""Every #include between top-level folders is allowed by docs/DESIGN.md's
folder table ("may include"), and no two folders include each other."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def allowed_table():
    """{folder: set of folders it may include}, from the DESIGN.md table."""
    rules = {}
    with open(os.path.join(ROOT, "docs/DESIGN.md")) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) != 3 or not cells[0].startswith("`"):
                continue
            folders = re.findall(r"`([a-z_/]+)/`", cells[0])
            may = set(re.findall(r"[a-z_/]+", cells[2].split("(")[0]))
            for folder in folders:
                rules[folder] = may
    return rules


def folder_of(path, folders):
    """The longest table folder holding path (daemon/core before daemon)."""
    best = None
    for f in folders:
        if path.startswith(f + "/") and (best is None or len(f) > len(best)):
            best = f
    return best


def main():
    rules = allowed_table()
    check(len(rules) >= 12, f"DESIGN.md's folder table names {len(rules)} folders (want >= 12)")
    check("anything" in rules.get("tests", set()), "DESIGN.md's table lets tests/ include anything")
    files = subprocess.run(["git", "ls-files", "*.c", "*.h", "*.cu"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    edges, seen = set(), 0
    for path in files:
        src = folder_of(path, rules)
        if src is None or src == "tests":
            continue
        with open(os.path.join(ROOT, path), errors="replace") as f:
            for inc in re.findall(r'^#include "([^"]+)"', f.read(), re.M):
                # the generated schema header belongs to the wire format
                dst = "wire" if inc.startswith("proto/") else folder_of(inc, rules)
                if dst is None or dst == src:
                    continue
                seen += 1
                edges.add((src, dst))
                check(dst in rules[src], f"{path} includes {inc}: {src}/ may not include {dst}/")
    check(seen > 50, f"found {seen} includes across folders (the scan found almost nothing)")
    for a, b in edges:
        check((b, a) not in edges, f"include cycle: {a}/ and {b}/ include each other")
    return summary("include_graph", f" ({seen} cross-folder includes)")


if __name__ == "__main__":
    sys.exit(main())
