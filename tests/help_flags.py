#!/usr/bin/env python3
"""Each program's --help exits 0 and names every flag the program parses.
The flags come from the sources: getopt_long tables and short-option
strings, string literals that start with a flag ("--name", "-h"), and the
layout flag table (layout/flags.c) for hgridctl. hgridctl's help is its
own plus each command's (hgridctl COMMAND --help). --help and -h
themselves need no mention: the help is what they print."""
import glob
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BIN = os.environ.get("HGRID_BIN", "bin")
SOURCES = {
    "gridd": ["daemon/*.c"],
    "hgrid-worker": ["worker/*.c", "worker/run_args.c"],
    "hgridctl": ["ctl/hgridctl.c", "ctl/ctl_*.c", "ctl/layout_args.c",
                 "ctl/watch_*.c", "layout/flags.c"],
    "hgrid-swarm": ["tools/swarm/*.c"],
    "hgrid-agent": ["agent/*.c"],
    "hgrid-train": ["model/single_gpu.c", "model/train_main.c"],
}


def flags_in(paths):
    flags = set()
    for path in paths:
        src = re.sub(r"/\*.*?\*/|//[^\n]*", " ", open(path).read(), flags=re.S)
        flags |= set(re.findall(r'"(--[a-z][a-z0-9-]*)', src))
        flags |= set(re.findall(r'"(-[a-zA-Z])"', src))
        flags |= {"--" + n for n in re.findall(
            r'\{\s*"([a-z][a-z0-9-]*)",\s*(?:no|required|optional)_argument', src)}
        for opts in re.findall(r'getopt(?:_long)?\([^,]+,[^,]+,\s*"([^"]*)"', src):
            flags |= {"-" + c for c in opts if c.isalnum()}
        if path.endswith("layout/flags.c"):
            flags |= {"--" + n for n in re.findall(r'\{\s*"([a-z][a-z0-9-]*)",\s*SPEC', src)}
    return flags


def help_text(prog):
    r = subprocess.run([os.path.join(BIN, prog), "--help"], capture_output=True, text=True,
                       timeout=30)
    check(r.returncode == 0, f"{prog} --help exits 0 (got {r.returncode}: {r.stderr.strip()})")
    check(r.stdout.strip() != "", f"{prog} --help prints its help on stdout")
    text = r.stdout
    if prog == "hgridctl":  # the commands listed under "commands:"
        block = text.split("commands:", 1)[-1]
        for cmd in re.findall(r"^  ([a-z]+)\s", block, flags=re.M):
            c = subprocess.run([os.path.join(BIN, prog), cmd, "--help"], capture_output=True,
                               text=True, timeout=30)
            check(c.returncode == 0, f"hgridctl {cmd} --help exits 0 (got {c.returncode})")
            text += c.stdout
    return text


def main():
    for prog, patterns in SOURCES.items():
        if prog == "hgrid-train" and not os.path.exists(os.path.join(BIN, prog)):
            print("help_flags: skipped hgrid-train: not built (no nvcc)")
            continue
        paths = sorted(p for pat in patterns for p in glob.glob(os.path.join(ROOT, pat)))
        flags = flags_in(paths)
        check(len(flags) >= 2, f"{prog}: flags found in its sources ({len(flags)})")
        text = help_text(prog)
        missing = sorted(f for f in flags - {"--help", "-h"}
                         if not re.search(r"(?<![\w-])" + re.escape(f) + r"(?![\w-])", text))
        check(not missing, f"{prog} --help names every flag it parses; missing: {missing}")
    return summary("help_flags")


if __name__ == "__main__":
    sys.exit(main())
