#!/usr/bin/env python3
"""Issue 17's layout rules on gridd's side: a SubmitJob that bypasses
hgridctl's own check (--llm-offset, --mimo-layout colocated, several
encoders, --make-vocab-size-divisible-by) is refused by gridd with the
layout engine's line, the one `hgridctl plan` prints for the same flags;
and the layouts users bring (upstream's 8-rank MoE recipe with --llm-offset
4, a colocated layout, two encoders, a padded vocabulary) are accepted,
`show --json`'s plan equal to `plan --json`'s, also after gridd restarts
on its state file."""
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemon_gridd as d  # noqa: E402  (gridd, protobuf by hand, the tally)

# hgridctl's defaults (hg_layout_spec_defaults), as Layout fields.
BASE = {"encoder_tp": 2, "encoder_dp": 2, "llm_tp": 2, "llm_cp": 1, "llm_pp": 1, "llm_dp": 2,
        "llm_ep": 1, "llm_expt_tp": 1, "micro_batch_size": 1, "divisible_by": 128}
MODEL = {"num_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "vocab_size": 32000,
         "seq_length": 1024, "moe_router_topk": 2, "encoder_num_layers": 12,
         "encoder_hidden_size": 384, "encoder_num_attention_heads": 6, "image_size": 224,
         "patch_size": 16}
# Field numbers of proto/hgrid.proto's Layout and ModelConfig.
LAYOUT_NO = {"encoder_tp": 1, "encoder_dp": 2, "llm_tp": 3, "llm_cp": 4, "llm_pp": 5,
             "llm_dp": 6, "llm_ep": 7, "llm_expt_tp": 8, "llm_only": 9, "world_size": 10,
             "micro_batch_size": 11, "global_batch_size": 12, "colocated": 21,
             "divisible_by": 22}
MODEL_NO = {"num_layers": 1, "hidden_size": 2, "num_attention_heads": 3, "vocab_size": 5,
            "seq_length": 6, "num_experts": 7, "moe_router_topk": 8, "encoder_num_layers": 9,
            "encoder_hidden_size": 10, "encoder_num_attention_heads": 11, "image_size": 12,
            "patch_size": 13}


def layout_bytes(fields, model, offset=None, encoders=()):
    out = b"".join(d.fv(LAYOUT_NO[k], int(v)) for k, v in fields.items() if v)
    out += d.fb(13, b"".join(d.fv(MODEL_NO[k], v) for k, v in model.items() if v))
    if offset is not None:
        out += d.fb(20, d.fv(20, offset) if offset else b"")
    for name, tp, dp in encoders:
        out += d.fb(23, d.fb(20, name) + d.fv(21, tp) + d.fv(22, dp))
    return out


def raw_submit(g, job, layout):
    """gridd's reply to a SubmitJob sent by hand: (error code, message), or (0, "")."""
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(g.sock)
    body = d.fv(1, 2) + d.fb(30, d.fb(1, job) + d.fb(2, "t") + d.fb(3, layout))
    raw.sendall(struct.pack(">I", len(body)) + body)
    raw.settimeout(10)
    reply = b""
    while len(reply) < 4 or len(reply) < 4 + struct.unpack(">I", reply[:4])[0]:
        chunk = raw.recv(65536)
        if not chunk:
            break
        reply += chunk
    raw.close()
    env = d.parse(reply[4:])
    if 20 not in env:
        return 0, ""
    err = d.parse(d.one(env, 20, b""))
    return d.one(err, 1), d.one(err, 2, b"").decode()


def plan_says(flags):
    r = subprocess.run([d.CTL, "plan", *flags], capture_output=True, text=True, timeout=30)
    prefix = "hgridctl: invalid layout: "
    line = r.stderr.strip()
    return r.returncode, line[len(prefix):] if line.startswith(prefix) else line


# (plan flags, Layout fields over BASE, model fields over MODEL, --llm-offset, encoders)
REFUSED = [
    (["--llm-offset", "3"], {}, {}, 3, ()),
    (["--llm-offset", "5"], {}, {}, 5, ()),
    (["--llm-only", "--llm-offset", "4"], {"llm_only": 1}, {}, 4, ()),
    (["--mimo-layout", "colocated", "--llm-offset", "4"], {"colocated": 1}, {}, 4, ()),
    (["--mimo-layout", "colocated", "--llm-only"], {"colocated": 1, "llm_only": 1}, {}, None, ()),
    (["--mimo-layout", "colocated", "--llm-pp", "2", "--llm-dp", "1"],
     {"colocated": 1, "llm_pp": 2, "llm_dp": 1}, {}, None, ()),
    (["--mimo-layout", "colocated", "--num-experts", "2", "--llm-ep", "2", "--llm-expt-tp", "2",
      "--llm-tp", "1", "--llm-dp", "4"],
     {"colocated": 1, "llm_ep": 2, "llm_expt_tp": 2, "llm_tp": 1, "llm_dp": 4},
     {"num_experts": 2}, None, ()),
    (["--mimo-layout", "colocated", "--llm-dp", "4"], {"colocated": 1, "llm_dp": 4}, {}, None,
     ()),
    (["--mimo-layout", "colocated", "--encoder-tp", "1", "--encoder-dp", "4", "--llm-tp", "4",
      "--llm-dp", "1"],
     {"colocated": 1, "encoder_tp": 1, "encoder_dp": 4, "llm_tp": 4, "llm_dp": 1}, {}, None, ()),
    (["--mimo-layout", "colocated", "--encoder-tp", "2", "--encoder-dp", "3", "--llm-tp", "3",
      "--llm-dp", "2", "--micro-batch-size", "3", "--num-attention-heads", "12"],
     {"colocated": 1, "encoder_dp": 3, "llm_tp": 3, "llm_dp": 2, "micro_batch_size": 3}, {},
     None, ()),
    (["--mimo-layout", "colocated", "--encoder", "a:tp=2,dp=2", "--encoder", "b:tp=2,dp=2"],
     {"colocated": 1}, {}, None, (("a", 2, 2), ("b", 2, 2))),
    (["--encoder", "vision:tp=2,dp=2", "--encoder", "audio:tp=1,dp=2", "--llm-offset", "4"],
     {}, {}, 4, (("vision", 2, 2), ("audio", 1, 2))),
    (["--encoder", "a:tp=2", "--encoder", "a:dp=2"], {}, {}, None, (("a", 2, 1), ("a", 1, 2))),
    (["--encoder", "llm:tp=1"], {}, {}, None, (("llm", 1, 1),)),
    (["--encoder", "Vision:tp=1"], {}, {}, None, (("Vision", 1, 1),)),
    (["--encoder", "a:tp=1,dp=4"], {}, {}, None, (("a", 1, 4),)),
    (["--encoder", "a:tp=4,dp=1"], {}, {}, None, (("a", 4, 1),)),
    (["--encoder", "a:tp=1", "--encoder", "b:tp=1", "--micro-batch-size", "2", "--seq-length",
      "399"], {"micro_batch_size": 2}, {"seq_length": 399}, None, (("a", 1, 1), ("b", 1, 1))),
    (["--make-vocab-size-divisible-by", "16777216"], {"divisible_by": 16777216}, {}, None, ()),
]

ACCEPTED = [
    ("moe-recipe", ["--encoder-tp", "2", "--encoder-dp", "2", "--llm-offset", "4", "--llm-tp",
                    "2", "--llm-dp", "2", "--llm-ep", "4", "--num-experts", "128",
                    "--num-layers", "20"], [0, 4], 32000),
    ("colocated", ["--mimo-layout", "colocated", "--encoder-tp", "1", "--encoder-dp", "4",
                   "--llm-tp", "2", "--llm-dp", "2", "--micro-batch-size", "2"], [0, 0], 32000),
    ("two-enc", ["--encoder", "vision:tp=2,dp=2", "--encoder", "audio:tp=1,dp=2",
                 "--llm-offset", "6", "--micro-batch-size", "2"], [0, 4, 6], 32000),
    ("vocab-tp3", ["--llm-tp", "3", "--num-attention-heads", "12"], [0, 4], 32256),
]


def main():
    tmp = tempfile.mkdtemp(prefix="hgrid-rules.")
    os.chmod(tmp, 0o700)
    state = os.path.join(tmp, "state")
    os.mkdir(state, 0o700)
    g = d.Gridd(tmp, "r", "--state-dir", state)
    try:
        for i, (flags, fields, model, offset, encoders) in enumerate(REFUSED):
            rc, why = plan_says(flags)
            d.check(rc == 1 and why, "plan %s refuses: %d %r" % (flags, rc, why))
            layout = layout_bytes(dict(BASE, **fields), dict(MODEL, **model), offset, encoders)
            if encoders:
                layout = layout_bytes(dict(BASE, encoder_tp=0, encoder_dp=0, **fields),
                                      dict(MODEL, **model), offset, encoders)
            code, msg = raw_submit(g, "raw-%d" % i, layout)
            d.check(code == 10 and why and msg.endswith(why),
                    "raw submit %s: gridd says %d %r, plan says %r" % (flags, code, msg, why))
        for job, flags, offsets, padded in ACCEPTED:
            rc, out, err = g.ctl("submit", "--job", job, "--token", "t", *flags)
            d.check(rc == 0, "submit %s: %d %r" % (job, rc, err))
        for restarted in (False, True):
            if restarted:  # the jobs come back from the state file
                g.stop("layout_rules_gridd")
                g = d.Gridd(tmp, "r", "--state-dir", state)
            for job, flags, offsets, padded in ACCEPTED:
                what = job + (" after a restart" if restarted else "")
                rc, out, _ = g.ctl("show", job, "--json")
                shown = json.loads(out).get("plan", {}) if rc == 0 else {}
                plan = json.loads(subprocess.run([d.CTL, "plan", "--json", *flags],
                                                 capture_output=True, text=True).stdout or "{}")
                d.check(shown and shown == plan, "%s: show --json's plan equals plan --json's" % what)
                d.check([m["rank_offset"] for m in shown.get("modules", [])] == offsets,
                        "%s: modules start at %s: %s" % (what, offsets, shown.get("modules")))
                d.check(shown.get("padded_vocab_size") == padded,
                        "%s: padded vocabulary %s, want %d" % (what, shown.get("padded_vocab_size"),
                                                                padded))
        for job, *_ in ACCEPTED:
            d.check(g.ctl("cancel", job)[0] == 0, "cancel %s" % job)
        g.stop("layout_rules_gridd")
    finally:
        if g.proc.poll() is None:
            g.proc.kill()
            g.proc.wait()
    print("layout_rules_gridd: %d passed, %d failed" % (d.passed, d.failed))
    sys.exit(1 if d.failed or not d.passed else 0)


if __name__ == "__main__":
    main()
