#!/usr/bin/env bash
# The GPU communicator test's flow on any machine: gridd, the four layouts
# with dry-run workers, hgridctl status, cancel -> exit 0 (no NCCL, no GPU).
exec "$(dirname "$0")/gpu/comm_layouts.sh" --dry-run
