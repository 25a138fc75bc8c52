#!/usr/bin/env bash
# Runs every fuzz target for SECS seconds (default 180) with small real rbd
# streams from the fixture corpus and the seeds kept in fuzz/seeds/<target>/
# as seeds (meta_json: store meta.json files). Needs cargo-fuzz (0.13.2 builds on
# stable rustc with RUSTC_BOOTSTRAP=1).
set -euo pipefail
cd "$(dirname "$0")"
SECS=${SECS:-180}
export RUSTC_BOOTSTRAP=1
FIX=../tests/fixtures/rbd-16.2.15
[ -d "$FIX" ] || { echo "fuzz/run.sh: corpus missing at $FIX" >&2; exit 1; }
for t in ${TARGETS:-decode decode_chunked merge integrity_trailer image_import meta_json}; do
  mkdir -p "corpus/$t"
  if [ -d "seeds/$t" ]; then cp seeds/"$t"/* "corpus/$t/"; fi
  if [ "$t" = meta_json ] && [ -z "$(ls seeds/meta_json 2>/dev/null)" ]; then
    echo "fuzz/run.sh: seeds missing in fuzz/seeds/meta_json" >&2; exit 1
  fi
  find "$FIX" \( -name '*.diff' -o -name '*.v2' -o -name '*.v2diff' -o -name 'image.v2*' \) -size -16k \
    | while read -r f; do
        case $t in
          decode) cp "$f" "corpus/$t/$(basename "$f" | tr -c 'A-Za-z0-9.\n' _)";;
          decode_chunked) { printf '\x02\x05\x00\x31\x00'; cat "$f"; } > "corpus/$t/$(basename "$f" | tr -c 'A-Za-z0-9.\n' _)";;
          image_import) case $f in *.v2*) { printf '\x02'; cat "$f"; } > "corpus/$t/$(basename "$f" | tr -c 'A-Za-z0-9.\n' _)";; esac;;
        esac
      done
  cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$SECS" -rss_limit_mb=2048 -max_len=65536 2>&1 | tail -n 12
done
