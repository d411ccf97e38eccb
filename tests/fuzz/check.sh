#!/usr/bin/env bash
# `make test`'s short fuzz run (10 s per harness) over the committed corpora.
exec "$(dirname "$0")/run.sh" "$HGRID_BIN/../fuzz" "${FUZZ_SECONDS:-10}"
