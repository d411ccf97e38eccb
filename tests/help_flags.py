#!/usr/bin/env python3
"""Each program's --help exits 0 and names every flag the program parses.
The flags come from the sources: each program's util/cli.h table
(CLI_OPT_*("name", ...) rows), string literals that start with a flag
("--name", "-h"), and the layout flag table (layout/flags.c) for hgridctl.
Every program also answers --version (exit 0, "PROGRAM (hgrid) VERSION"). hgridctl's help is its
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
    "hgrid-example-join": ["examples/*.c"],
    "hgrid-swarm": ["tools/swarm/*.c"],
    "hgrid-agent": ["agent/*.c"],
    "hgrid-lines": ["tools/lines/*.c"],
}


def flags_in(paths):
    flags = set()
    for path in paths:
        src = re.sub(r"/\*.*?\*/|//[^\n]*", " ", open(path).read(), flags=re.S)
        flags |= set(re.findall(r'"(--[a-z][a-z0-9-]*)', src))
        flags |= set(re.findall(r'"(-[a-zA-Z])"', src))
        # util/cli.h's table rows: CLI_OPT_KIND("name", ...), with a short name where given
        flags |= {"--" + n for n in re.findall(r'CLI_OPT_[A-Z]+\(\s*"([a-z][a-z0-9-]*)"', src)}
        flags |= {"-" + c for c in re.findall(r'CLI_OPT_[A-Z]+\(\s*"[a-z0-9-]*",\s*\'([a-zA-Z])\'', src)}
        if path.endswith("layout/flags.c"):
            flags |= {"--" + n for n in re.findall(r'\{\s*"([a-z][a-z0-9-]*)",\s*(?:SPEC|MODEL)', src)}
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
        paths = sorted(p for pat in patterns for p in glob.glob(os.path.join(ROOT, pat)))
        flags = flags_in(paths)
        least = 1 if prog == "hgrid-lines" else 2  # its one flag, --prefix
        check(len(flags) >= least, f"{prog}: flags found in its sources ({len(flags)})")
        text = help_text(prog)
        missing = sorted(f for f in flags - {"--help", "-h"}
                         if not re.search(r"(?<![\w-])" + re.escape(f) + r"(?![\w-])", text))
        check(not missing, f"{prog} --help names every flag it parses; missing: {missing}")
        if prog == "hgrid-train":  # goes with issue 15's one training path
            continue
        v = subprocess.run([os.path.join(BIN, prog), "--version"], capture_output=True, text=True,
                           timeout=30)
        check(v.returncode == 0 and re.fullmatch(prog + r" \(hgrid\) \S+\n", v.stdout),
              f"{prog} --version exits 0 printing '{prog} (hgrid) VERSION': {v.returncode} "
              f"{v.stdout!r}")
    return summary("help_flags")


if __name__ == "__main__":
    sys.exit(main())
