#!/usr/bin/env bash
# Serve benchmark: tuile beside nginx (static files, the "physical limit") and a bare node:http server in 2
# workers answering one fixed buffer of the hot tile's size (the runtime's ceiling, bench/bare.mjs), on the
# same tiles, in one run of interleaved rounds with the same wrk (-t2 -c64), loopback only, through the
# lists and helpers of ../shared/peers. Needs bench/build.sh first: it serves the last pyramid tuile built
# there ($PEERS_WORK/contender/png).
#   RUNS=3 DURATION=10 bash bench/serve.sh              # nginx, tuile, bare
#   RUNS=3 DURATION=10 bash bench/serve.sh tuile bare   # any of: nginx mapcache mapproxy tuile bare
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS=$(cd "${PEERS:-../shared/peers}" && pwd)
. "$PEERS/common.sh"
RUNS="${RUNS:-3}"; DURATION="${DURATION:-10}"; THREADS="${THREADS:-2}"; CONNS="${CONNS:-64}"; WARMUP="${WARMUP:-2}"
SERVERS=("$@")
[ ${#SERVERS[@]} -gt 0 ] || SERVERS=(nginx tuile bare)
PYR=$WORK/contender/png
[ -f "$PYR/pyramid.json" ] || { echo "no tuile pyramid in $PYR: run bench/build.sh first" >&2; exit 2; }
[ -f dist/cli.js ] || npm run build
PORT_TUILE=${TUILE_BENCH_PORT:-18091}; PORT_BARE=$((PORT_TUILE + 1))

# the peers' tile lists (the same tiles for every server), as bench-serve.sh makes them
RASTER="$(pick_raster)"; raster_facts; render_all
# (the list keeps the tiles present in every peer's cache: their pyramids are built once if missing)
need=()
[ -d "$WORK/g2t/xyz_png" ] || need+=(g2t-warp g2t-png)
[ -d "$WORK/mapproxy/cache/ortho_png" ] || need+=(mapproxy-png)
[ -d "$WORK/mapcache/cache/ortho" ] || need+=(mapcache-png)
[ ${#need[@]} -eq 0 ] || PEERS_RESULTS="$WORK/logs" RUNS=1 bash "$PEERS/bench-build.sh" "${need[@]}" >/dev/null
L="$WORK/lists"; mkdir -p "$L"
"$PY" "$PEERS/lib/tiles.py" list "$BBOX_3857_CSV" "$ZMIN" "$ZMAX" "$WORK/ref_tiles.txt" >/dev/null
"$PY" "$PEERS/lib/make_lists.py" "$WORK/ref_tiles.txt" "$WORK" "$L"
for k in list hot; do
  "$PY" "$PEERS/lib/tiles.py" urls "$L/$( [ $k = list ] && echo tiles || echo hot ).txt" "" "/tiles/bench/{z}/{x}/{y}.png" "$L/tuile.$k.urls"
  cp "$L/tuile.$k.urls" "$L/bare.$k.urls"
done

. "$PEERS/lib/servers.sh"
declare -A PID_OF=()
stop_ours() { for p in "${PID_OF[@]}"; do stop_pid "$p"; done; stop_all; }
trap stop_ours EXIT
wait_200() { # URL PID
  for _ in $(seq 1 150); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" = 200 ] && return 0
    kill -0 "$2" 2>/dev/null || break; sleep 0.2
  done
  echo "no 200 from $1" >&2; return 1
}
base() { case "$1" in tuile) echo "http://127.0.0.1:$PORT_TUILE" ;; bare) echo "http://127.0.0.1:$PORT_BARE" ;; *) base_of "$1" ;; esac; }
spid() { case "$1" in tuile|bare) echo "${PID_OF[$1]}" ;; *) pid_of "$1" ;; esac; }

for s in "${SERVERS[@]}"; do
  case "$s" in
    tuile)
      PID_OF[tuile]=$("$PY" "$PEERS/lib/daemon.py" "$WORK/logs/tuile-serve.log" -- env HOST=127.0.0.1 PORT=$PORT_TUILE TUILE_DEMO=0 \
        TUILE_DATA_DIR="$WORK/tuile-data" TUILE_CACHE_MB=${TUILE_CACHE_MB:-256} TUILE_WORKERS=2 ${TUILE_NODE:-node} "$ROOT/dist/cli.js" serve --layer "bench=$PYR")
      wait_200 "$(base tuile)$(head -1 "$L/tuile.hot.urls")" "${PID_OF[tuile]}"
      "$PY" "$PEERS/lib/verify.py" "$(base tuile)" "$L/tuile.list.urls" | cut -c1-200 ;;
    bare)
      # one fixed buffer: the hot tile's bytes, as tuile answers it
      curl -sf -o "$WORK/run/hot.png" "$(base tuile)$(head -1 "$L/tuile.hot.urls")" \
        || cp "$WORK/g2t/xyz_png/$(head -1 "$L/hot.txt" | tr ' ' '/').png" "$WORK/run/hot.png"
      PID_OF[bare]=$("$PY" "$PEERS/lib/daemon.py" "$WORK/logs/bare.log" -- node "$ROOT/bench/bare.mjs" "$WORK/run/hot.png" $PORT_BARE 2)
      wait_200 "$(base bare)/" "${PID_OF[bare]}" ;;
    *) start_server "$s" ;;
  esac
done

STAMP=$(date +%Y%m%dT%H%M%S)
OUT="$RESULTS/serve-$STAMP.jsonl"; LOG="$WORK/logs/serve-$STAMP.log"
echo "raw: $OUT   wrk -t$THREADS -c$CONNS -d${DURATION}s x $RUNS (+${WARMUP}s warm-up); hot tile $(stat -c %s "$WORK/run/hot.png" 2>/dev/null || echo '?') bytes"
for i in $(seq 1 "$RUNS"); do
  for sc in hot list; do
    for s in "${SERVERS[@]}"; do
      export WRK_URLS="$L/$s.$sc.urls"
      wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" --timeout 10s -s "$PEERS/lib/wrk-urls.lua" "$(base "$s")" >> "$LOG" 2>&1 || true
      read -r c0 _ _ < <("$PY" "$PEERS/lib/procstat.py" "$(spid "$s")")
      wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s --latency -s "$PEERS/lib/wrk-urls.lua" "$(base "$s")" > "$WORK/run/wrk.out" 2>&1 || true
      read -r c1 rss _ < <("$PY" "$PEERS/lib/procstat.py" "$(spid "$s")")
      cat "$WORK/run/wrk.out" >> "$LOG"
      "$PY" "$PEERS/lib/wrkjson.py" "$WORK/run/wrk.out" "$s/$sc" "$i" "$c0" "$c1" "$rss" "$THREADS" "$CONNS" "$DURATION" >> "$OUT"
      "$PY" -c "import json,sys; r=json.loads(open(sys.argv[1]).readlines()[-1]); print('    %-12s run %d: %7.0f req/s  p99 %7.2f ms' % (r['label'], r['run'], r['requests']/(r['duration_us']/1e6), r['lat_p99_us']/1e3))" "$OUT"
    done
  done
done
echo
"$PY" "$PEERS/lib/summarize.py" serve "$OUT" | tee "${OUT%.jsonl}.md"
# tuile over the bare server, per scenario (medians of req/s)
"$PY" - "$OUT" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line); rows.setdefault(r["label"], []).append(r["requests"] / (r["duration_us"] / 1e6))
for sc in ("hot", "list"):
    t, b = rows.get(f"tuile/{sc}"), rows.get(f"bare/{sc}")
    if t and b: print(f"tuile/{sc} x bare: {statistics.median(t) / statistics.median(b):.2f}")
PY
