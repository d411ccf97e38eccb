#!/usr/bin/env python3
"""Writes the man page of an hgrid program from its --help (and, for
hgridctl, each command's --help), so that page and program cannot drift:
tests/man_pages.py regenerates each page and fails when it differs from the
file in man/. Usage:
  man/man_page.py BIN_DIR PROG        print PROG's page (troff) on stdout
  man/man_page.py BIN_DIR --write     rewrite man/gridd.1, man/hgridctl.1, man/hgrid-worker.1,
                                      man/hgrid-agent.1
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

PAGES = {
    "gridd": {
        "name": "the hgrid coordinator daemon",
        "sections": [
            ("ENVIRONMENT", [
                ("HGRID_CONTROL", "the control socket when --control is not given"),
                ("NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID",
                 "set by systemd (Type=notify): gridd reports READY=1, its status, "
                 "WATCHDOG=1 and STOPPING=1 there"),
            ]),
            ("FILES", [
                ("/run/hgrid/gridd.sock", "the control socket of gridd.service (root's default)"),
                ("STATE_DIR/state", "jobs and rank maps kept across restarts (--state-dir)"),
            ]),
        ],
        "see_also": ["hgridctl(1)", "hgrid-worker(1)"],
    },
    "hgridctl": {
        "name": "plan hgrid layouts and drive gridd",
        "sections": [
            ("ENVIRONMENT", [
                ("HGRID_CONTROL", "gridd's control socket when --socket is not given"),
                ("XDG_RUNTIME_DIR", "where a user's gridd keeps its socket (hgrid/gridd.sock)"),
                ("COLUMNS", "show's width when stdout is no terminal"),
            ]),
        ],
        "see_also": ["gridd(1)", "hgrid-worker(1)"],
    },
    "hgrid-worker": {
        "name": "an hgrid worker: one per GPU",
        "sections": [
            ("ENVIRONMENT", [
                ("HGRID_COORDINATOR", "gridd's address when --coordinator is not given"),
                ("MASTER_ADDR, HGRID_PORT",
                 "else gridd at MASTER_ADDR:HGRID_PORT (port default 7420), as torchrun sets it"),
                ("HGRID_JOB, HGRID_TOKEN", "the job and its token (ps does not show the token)"),
                ("LOCAL_RANK, SLURM_LOCALID", "the GPU when --device is not given"),
                ("RANK, SLURM_PROCID, WORLD_SIZE, SLURM_NTASKS",
                 "the rank --use-launcher-rank asks for, and its bound"),
                ("HGRID_HOSTNAME, SLURMD_NODENAME", "the host name when --host is not given"),
            ]),
        ],
        "see_also": ["gridd(1)", "hgridctl(1)"],
    },
    "hgrid-agent": {
        "name": "one per host: carries the host's workers to gridd over one link",
        "sections": [
            ("ENVIRONMENT", [
                ("HGRID_AGENT_SOCKET", "the socket when --socket is not given; workers "
                 "connect through the agent there (none: directly to gridd)"),
            ]),
            ("FILES", [
                ("/run/hgrid/agent.sock", "the default socket (hgrid-agent.service)"),
            ]),
        ],
        "see_also": ["gridd(1)", "hgrid-worker(1)"],
    },
}


def help_of(bin_dir, *args):
    r = subprocess.run([os.path.join(bin_dir, args[0])] + list(args[1:]) + ["--help"],
                       capture_output=True, text=True, timeout=30, check=True)
    return r.stdout


def ctl_commands(bin_dir):
    """hgridctl's commands, as its --help lists them under "commands:"."""
    block = help_of(bin_dir, "hgridctl").split("commands:", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^  ([a-z]+) ", block, flags=re.M)


def esc(text):
    """Text for troff: backslashes and dashes escaped, no line starting a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.M)


def flag_item(flags):
    """'--listen HOST:PORT' as bold flags and italic values."""
    words = []
    for w in flags.split():
        comma = "," if w.endswith(",") else ""
        w = w.rstrip(",")
        words.append((r"\fB" if w.startswith("-") else r"\fI") + esc(w) + r"\fR" + comma)
    return " ".join(words)


def body(lines, heading):
    """The help's lines after its usage paragraph as troff: option entries
    as .TP items, "Heading:" lines as subheadings (`heading` is .SS or a bold
    line), "Exit status:" kept apart (returned), other text preformatted."""
    out, text, exit_status = [], [], []

    def flush():
        if text:
            out.extend([".PP", ".nf"] + [esc(t) for t in text] + [".fi"])
            text.clear()

    item, in_exit = None, False
    for line in lines:
        if line.startswith("Exit status:") or (in_exit and line.strip()):
            flush()
            in_exit = True
            exit_status.append(line)
            continue
        in_exit = False
        m = re.match(r"^ {2,8}(-[^ ]*(?: (?!\s)[^ ]+)*?)(?: {2,}(\S.*))?$", line)
        if m and line.lstrip().startswith("-"):
            flush()
            # flags whose text is on a later line share it (.TQ)
            tag = ".TQ" if item == [] else ".TP"
            item = [m.group(2)] if m.group(2) else []
            out.extend([tag, flag_item(m.group(1)), item])  # item: its text, joined later
            continue
        if item is not None and line.startswith("   ") and line.strip():
            item.append(line.strip())
            continue
        item = None
        if not line.strip():
            flush()
            continue
        if not text and re.match(r"^[A-Za-z].*:$", line):
            flush()
            out += [f".SS {esc(line[:-1])}"] if heading == ".SS" else [".PP", rf"\fB{esc(line[:-1])}\fR"]
            continue
        text.append(line)
    flush()
    rendered = []
    for x in out:
        if x != []:
            rendered.append(esc(" ".join(x)) if isinstance(x, list) else x)
    return rendered, exit_status


def split_usage(text):
    """(usage lines, description lines, the rest) of a --help text."""
    lines = text.rstrip("\n").split("\n")
    i = 0
    usage = []
    while i < len(lines) and (lines[i].startswith("usage:") or
                              (usage and lines[i].startswith("       "))):
        usage.append(lines[i].replace("usage: ", "", 1).strip())
        i += 1
    desc = []
    while i < len(lines) and lines[i].strip():
        desc.append(lines[i])
        i += 1
    return usage, desc, lines[i:]


def page(bin_dir, prog):
    info = PAGES[prog]
    usage, desc, rest = split_usage(help_of(bin_dir, prog))
    title = prog.upper().replace("-", "\\-")
    out = [f'.TH {title} 1 "" "hgrid" "hgrid manual"',
           ".\\\" Generated by man/man_page.py from the program's --help; do not edit.",
           ".SH NAME", f"{esc(prog)} \\- {esc(info['name'])}", ".SH SYNOPSIS", ".nf"]
    out += [esc(u) for u in usage] + [".fi"]
    if desc:
        out += [".SH DESCRIPTION", ".nf"] + [esc(d) for d in desc] + [".fi"]
    out.append(".SH OPTIONS")
    lines, exit_status = body(rest, ".SS")
    out += lines
    if prog == "hgridctl":
        out.append(".SH COMMANDS")
        for cmd in ctl_commands(bin_dir):
            usage, desc, rest = split_usage(help_of(bin_dir, prog, cmd))
            out += [f".SS {esc('hgridctl ' + cmd)}", ".nf"] + [esc(u) for u in usage]
            out += [".fi", ".PP", ".nf"] + [esc(d) for d in desc] + [".fi"]
            lines, status = body(rest, ".B")
            out += lines
            out += [".PP", ".nf"] + [esc(s) for s in status] + [".fi"] if status else []
    for title, entries in info["sections"]:
        out.append(f".SH {title}")
        for name, what in entries:
            out += [".TP", r"\fB" + esc(name) + r"\fR", esc(what)]
    if exit_status:
        out += [".SH EXIT STATUS", ".nf"] + [esc(s) for s in exit_status] + [".fi"]
    out += [".SH SEE ALSO", ", ".join(r"\fB" + esc(s.split("(")[0]) + r"\fR(" + s.split("(")[1]
                                      for s in info["see_also"]),
            "and docs/OPERATIONS.md (installed under share/doc/hgrid)."]
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    bin_dir, what = sys.argv[1], sys.argv[2]
    if what == "--write":
        for prog in PAGES:
            with open(os.path.join(HERE, prog + ".1"), "w") as f:
                f.write(page(bin_dir, prog))
        return 0
    sys.stdout.write(page(bin_dir, what))
    return 0


if __name__ == "__main__":
    sys.exit(main())
