#!/usr/bin/env bash
# The core client library's ABI: libhgrid.so.1 is its SONAME, it needs
# neither the CUDA runtime nor NCCL, and it exports only hgrid_* (its
# version script); libhgrid_nccl.so.1 exports only its own part and needs
# libhgrid.so.1.
set -u
bin=${HGRID_BIN:-bin}
fails=0 checks=0
ok() { checks=$((checks + 1)); }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
for tool in readelf nm; do
  command -v $tool >/dev/null || { echo "SKIP: $tool is not installed (binutils)"; exit 77; }
done
core=$bin/libhgrid.so.1 nccl=$bin/libhgrid_nccl.so.1
[ -f "$core" ] && [ -f "$nccl" ] || { fail "$core or $nccl missing; run make"; exit 1; }

soname=$(readelf -d "$core" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libhgrid.so.1 ] && ok || fail "libhgrid SONAME is '$soname', want libhgrid.so.1"
[ "$(readlink "$bin/libhgrid.so")" = libhgrid.so.1 ] && ok || fail "libhgrid.so does not link to libhgrid.so.1"
needed=$(readelf -d "$core" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
case "$needed" in *cudart*|*nccl*|*cuda*) fail "libhgrid.so.1 needs CUDA or NCCL: $needed" ;; *) ok ;; esac
case "$needed" in *protobuf-c*) ok ;; *) fail "libhgrid.so.1 does not name libprotobuf-c: $needed" ;; esac

exported=$(nm -D --defined-only "$core" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sed 's/@.*//' | sort -u)
count=$(echo "$exported" | grep -c .)
[ "$count" -ge 30 ] && ok || fail "libhgrid.so.1 exports only $count symbols"
others=$(echo "$exported" | grep -v '^hgrid_' | grep -v '^HGRID_1$' | head -5 | tr '\n' ' ')
[ -z "$others" ] && ok || fail "libhgrid.so.1 exports non-hgrid_ symbols: $others"
for f in hgrid_connect hgrid_hello hgrid_wait_assignment hgrid_heartbeat hgrid_leave hgrid_poll \
         hgrid_group_at hgrid_coord hgrid_assignment_only hgrid_store_open hgrid_store_request \
         hgrid_connect_wait hgrid_done hgrid_wait_end hgrid_report_failure hgrid_job_outcome \
         hgrid_num_modules hgrid_coords_at; do
  echo "$exported" | grep -qx "$f" && ok || fail "libhgrid.so.1 does not export $f"
done
nm -D --defined-only "$core" | grep -q ' hgrid_connect@@HGRID_1$' && ok ||
  fail "hgrid_connect is not versioned HGRID_1"
nm -D --undefined-only "$core" | grep -qi 'nccl\|cuda' && fail "libhgrid.so.1 references NCCL/CUDA symbols" || ok

soname=$(readelf -d "$nccl" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libhgrid_nccl.so.1 ] && ok || fail "libhgrid_nccl SONAME is '$soname'"
readelf -d "$nccl" | grep -q 'NEEDED.*\[libhgrid.so.1\]' && ok || fail "libhgrid_nccl.so.1 does not need libhgrid.so.1"
others=$(nm -D --defined-only "$nccl" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sed 's/@.*//' |
         grep -v '^hgrid_comms_\|^hgrid_self_test_\|^hgrid_nccl_\|^HGRID_NCCL_1$' | head -5 | tr '\n' ' ')
[ -z "$others" ] && ok || fail "libhgrid_nccl.so.1 exports other symbols: $others"
nm -D --defined-only "$nccl" | grep -q ' hgrid_nccl_mint@@HGRID_NCCL_1$' && ok ||
  fail "libhgrid_nccl.so.1 does not export hgrid_nccl_mint"

[ "$fails" -eq 0 ] && { echo "libhgrid_abi: $checks checks passed"; exit 0; }
echo "libhgrid_abi: $fails of $((checks + fails)) checks failed"; exit 1
