#!/usr/bin/env python3
"""docs/OPERATIONS.md's troubleshooting table cannot drift from the code:
every error message a user can meet, taken from the sources, must match a
`code span` of the doc in full, where the doc writes each printf directive
(%s, %d, ...) as a word of its own that names the value (NAME, REASON, ...).

The messages: string literals (adjacent ones joined) that start with a
program's prefix ("gridd: ", "hgrid-worker: ", "hgridctl: ", "hgrid-swarm: ")
and the messages gridd sends workers and hgridctl
(conn_fail, reply_error, refusal texts) and libhgrid's hgrid_fail texts,
which the programs print after their prefix. Pure pass-through formats
("gridd: %s") and layout validation messages (they name the flags at
fault; the doc covers them as a kind) are left out.
The scan must find something: every source folder exists and holds a
message, and each program's prefix starts at least one (a scan that finds
nothing fails rather than passing vacuously).
With --list: print the messages found, one per line."""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SOURCE_DIRS = ["daemon", "daemon/core", "libhgrid", "ctl", "worker", "tools/swarm", "wire",
               "train", "util", "agent", "tools/lines"]
PROGRAMS = ["gridd", "hgrid-worker", "hgridctl", "hgrid-swarm", "hgrid-agent", "hgrid-lines"]
PREFIX = re.compile(r"^(gridd|hgrid-worker|hgridctl|hgrid-swarm|hgrid-agent|hgrid-lines|hgrid): ")
# Calls whose format argument is an error message a user reads.
CALLS = re.compile(r"\b(conn_fail|reply_error|hgrid_fail|usage_error|refuse\(|errlen,|snprintf\((?:err|message|why|w->error),)")
DIRECTIVE = re.compile(r"%[-+ #0]*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|z|j|t)?[diouxXeEfgGcsp]")
# Replies that are not errors.
NOT_ERRORS = {"job %s submitted: waiting for %d workers", "job %s cancelled; its workers were released",
              "job %s had ended (%s); removed"}
LITERALS = re.compile(r'(?:"(?:[^"\\\n]|\\.)*"\s*)+')


def unescape(lit):
    parts = re.findall(r'"((?:[^"\\\n]|\\.)*)"', lit)
    text = "".join(parts)
    return (text.replace("\\n", "\n").replace("\\t", " ").replace('\\"', '"')
            .replace("\\'", "'").replace("\\\\", "\\"))


def strip_comments(src):
    src = re.sub(r"/\*.*?\*/", " ", src, flags=re.S)
    return re.sub(r'//[^\n"]*$', "", src, flags=re.M)


def messages():
    """{message format: first file:line} for every message found; a folder
    that is missing or holds no message is a problem (in problems)."""
    found, problems = {}, []
    for d in SOURCE_DIRS:
        if not os.path.isdir(os.path.join(ROOT, d)):
            problems.append(f"source folder {d}/ does not exist (update SOURCE_DIRS)")
            continue
        before_dir = len(found)
        for name in sorted(os.listdir(os.path.join(ROOT, d))):
            if not name.endswith(".c"):
                continue
            path = os.path.join(d, name)
            src = strip_comments(open(os.path.join(ROOT, path)).read())
            for m in LITERALS.finditer(src):
                text = unescape(m.group(0))
                before = src[max(0, m.start() - 200):m.start()]
                call = list(CALLS.finditer(before))
                # The literal is a call's format when the call opens after the last ';' or '{'.
                is_call_fmt = call and not re.search(r"[;{}]", before[call[-1].end():])
                if not (PREFIX.match(text) or is_call_fmt):
                    continue
                for line in text.split("\n"):
                    line = line.strip()
                    words = re.sub(r"[^a-zA-Z ]", " ", DIRECTIVE.sub(" ", PREFIX.sub("", line)))
                    if len(words.split()) < 2 or line.startswith("usage:") or line in NOT_ERRORS:
                        continue
                    found.setdefault(line, f"{path}:{src.count(chr(10), 0, m.start()) + 1}")
        if len(found) == before_dir:
            problems.append(f"no error message found in {d}/ (do the patterns still match?)")
    for prog in PROGRAMS:
        if not any(f.startswith(prog + ": ") for f in found):
            problems.append(f"no message starting '{prog}: ' found (do the patterns still match?)")
    return found, problems


def pattern(fmt):
    """fmt as a regex over the doc: each directive any text (the word the doc names it by)."""
    out, pos = "", 0
    for m in DIRECTIVE.finditer(fmt):
        out += re.escape(fmt[pos:m.start()].replace("%%", "%")) + r".*?"
        pos = m.end()
    return re.compile(out + re.escape(fmt[pos:].replace("%%", "%")))


def as_doc_row(fmt):
    """fmt as the doc writes it: N for numbers, ... for text."""
    return DIRECTIVE.sub(lambda m: "N" if m.group(0)[-1] in "diouxXeEfgG" else "…",
                         fmt).replace("%%", "%").replace("|", "\\|")


def main():
    found, problems = messages()
    if "--list" in sys.argv:
        for fmt, where in sorted(found.items(), key=lambda x: x[1]):
            print(f"{where}\t{fmt}")
        return 0
    doc = open(os.path.join(ROOT, "docs", "OPERATIONS.md")).read()
    spans = [s.replace("\\|", "|") for s in re.findall(r"`([^`\n]+)`", doc)]
    missing = []
    for fmt, where in sorted(found.items(), key=lambda x: x[1]):
        pat = pattern(fmt)
        # The doc may drop the program prefix where a row names the program.
        bare = pattern(PREFIX.sub("", fmt))
        if not any(pat.fullmatch(s) or bare.fullmatch(s) for s in spans):
            missing.append(f"{where}: {fmt}")
    for m in missing:
        print("not in docs/OPERATIONS.md: " + m)
    if missing:
        print("add rows like these to its troubleshooting section, saying what to do:")
        for m in missing:
            print("| `" + as_doc_row(m.split(": ", 1)[1]) + "` | what to do |")
    for p in problems:
        print("FAIL doc_errors: " + p)
    print(f"doc_errors: {len(found) - len(missing)} of {len(found)} error messages documented")
    return 1 if missing or problems else 0


if __name__ == "__main__":
    sys.exit(main())
