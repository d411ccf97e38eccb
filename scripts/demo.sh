#!/usr/bin/env bash
# The main job on an embedded default layout. Until gridd lands this shows
# the default layout's plan: which ranks train the encoder and the LLM and
# which process groups they form.
set -euo pipefail
bin=${HGRID_BIN:-bin}
echo "== hgrid demo: the default layout (encoder tp2 dp2 + llm tp2 dp2) =="
"$bin/hgridctl" plan "$@"
