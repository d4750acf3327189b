#!/usr/bin/env bash
# The reference scenario (DESIGN 1, the Entrepôt tutorial "mise à jour au fur et à mesure") with curl,
# against a running tuile:
#   1. upload the north delivery, close it, wait until its checks pass (CLOSED)
#   2. compute a pyramid from it (raster-to-pyramid), wait for SUCCESS
#   3. configure a WMTS-TMS layer on that pyramid and publish it (offering), wait for PUBLISHED
#   4. upload the south delivery and compute a pyramid chained on the north one
#   5. point the configuration at the chained pyramid, synchronise the offering: the same layer now
#      serves the north and the south
#
# Usage (from anywhere; the deliveries are taken from data/demo/ beside this script):
#   BASE=http://localhost:8080 TOKEN=... LAYER=tutorial bash examples/tutorial.sh
# BASE defaults to http://localhost:8080, TOKEN to the content of ${TUILE_DATA_DIR:-./data}/admin-token,
# LAYER to "tutorial". Needs bash, curl and node (no jq). Exits non-zero on any unexpected HTTP status.
set -euo pipefail

BASE=${BASE:-http://localhost:8080}
BASE=${BASE%/}
LAYER=${LAYER:-tutorial}
TIMEOUT=${TIMEOUT:-600} # seconds to wait for any one status
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NORTH_TIF=$ROOT/data/demo/france_relief_north_2154.tif
SOUTH_TIF=$ROOT/data/demo/france_relief_south_2154.tif
BOTTOM=7 # the bottom level of the pyramids (the deliveries are 2 km pixels: level 7 is about 1.2 km)

die() {
  echo "tutorial: $*" >&2
  exit 1
}

if [ -z "${TOKEN:-}" ]; then
  token_file=${TUILE_DATA_DIR:-./data}/admin-token
  [ -r "$token_file" ] || die "no TOKEN given and $token_file cannot be read (set TOKEN, or TUILE_DATA_DIR to the server's data folder)"
  TOKEN=$(tr -d '[:space:]' <"$token_file")
fi
command -v curl >/dev/null || die "curl is needed"
command -v node >/dev/null || die "node is needed (to read JSON)"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# json PATH [DEFAULT]: the value at a dotted path (`0._id`, `output.stored_data._id`) of the JSON on
# stdin; strings print raw, anything else as indented JSON. A missing value prints DEFAULT if given,
# fails otherwise.
json() {
  node -e '
    const [path = "", dflt] = process.argv.slice(1);
    let s = "";
    process.stdin.on("data", (d) => (s += d)).on("end", () => {
      if (s === "") process.exit(3); // the call before failed and said why
      let v = JSON.parse(s);
      for (const k of path.split(".").filter(Boolean)) v = v === null || v === undefined ? undefined : v[k];
      if (v === undefined) {
        if (dflt !== undefined) v = dflt;
        else {
          console.error(`tutorial: no ${path} in ${s.slice(0, 500)}`);
          process.exit(3);
        }
      }
      process.stdout.write(typeof v === "string" ? v : JSON.stringify(v, null, 2));
    });' "$@"
}

# call METHOD PATH EXPECTED_STATUS [curl options...]: $BASE$PATH with the admin token; prints
# the response body; any other status than EXPECTED_STATUS prints the error and stops the tutorial.
call() {
  local method=$1 path=$2 want=$3 code
  shift 3
  code=$(curl -sS -o "$TMP/body" -w '%{http_code}' -X "$method" -H "Authorization: Bearer $TOKEN" "$@" "$BASE$path") ||
    die "$method $BASE$path: curl failed"
  if [ "$code" != "$want" ]; then
    echo "tutorial: $method $path answered HTTP $code, expected $want:" >&2
    cat "$TMP/body" >&2
    echo >&2
    exit 1
  fi
  cat "$TMP/body"
}

# post_json PATH EXPECTED_STATUS BODY (also put_json)
post_json() { call POST "$1" "$2" -H 'Content-Type: application/json' --data-binary "$3"; }
put_json() { call PUT "$1" "$2" -H 'Content-Type: application/json' --data-binary "$3"; }

# wait_for WHAT PATH STATUS [FAILED_STATUS...]: polls PATH until its status is STATUS (printing each
# status, and the progress of executions); a FAILED_STATUS or the timeout stops the tutorial.
# The last body read is left in $LAST.
wait_for() {
  local what=$1 path=$2 want=$3 status progress line last="" deadline=$((SECONDS + TIMEOUT)) f check
  shift 3
  while :; do
    LAST=$(call GET "$path" 200)
    # "STATUS" or "STATUS PROGRESS" in one node start
    read -r status progress < <(node -e 'const j = JSON.parse(process.argv[1]); console.log(j.status, j.progress ?? "")' "$LAST")
    line=$status${progress:+ ($progress %)}
    if [ "$line" != "$last" ]; then
      echo "   $what: $line"
      last=$line
    fi
    if [ "$status" = "$want" ]; then return 0; fi
    for f in "$@"; do
      if [ "$status" = "$f" ]; then
        echo "$LAST" >&2
        # why: the execution's logs, or the logs of the upload's failed check
        case $path in
          */executions/*) call GET "$path/logs" 200 >&2 ;;
          */uploads/*)
            check=$(call GET "$path/checks" 200 | json failed.0._id '')
            if [ -n "$check" ]; then call GET "$D/checks/executions/$check/logs" 200 >&2; fi
            ;;
        esac
        echo >&2
        die "$what ended $status"
      fi
    done
    if [ "$SECONDS" -gt "$deadline" ]; then die "$what still $status after $TIMEOUT s"; fi
    sleep 0.5
  done
}

# deliver NAME FILE: upload (OPEN), push the file, close (CHECKING), wait until CLOSED; sets UPLOAD
deliver() {
  local name=$1 file=$2 checks
  echo "-- POST $D/uploads: a RASTER upload \"$name\" declared in EPSG:2154"
  UPLOAD=$(post_json "$D/uploads" 201 "{\"name\": \"$name\", \"description\": \"tutorial: $(basename "$file")\", \"type\": \"RASTER\", \"srs\": \"EPSG:2154\"}" | json _id)
  echo "   upload $UPLOAD (OPEN)"
  echo "-- POST $D/uploads/$UPLOAD/data?path=data/$(basename "$file"): push the GeoTIFF (multipart field \"file\")"
  call POST "$D/uploads/$UPLOAD/data?path=data/$(basename "$file")" 200 -F "file=@$file" | json
  echo
  echo "-- POST $D/uploads/$UPLOAD/close: close the upload, which starts its checks"
  call POST "$D/uploads/$UPLOAD/close" 200 >/dev/null
  wait_for "upload $UPLOAD" "$D/uploads/$UPLOAD" CLOSED UNSTABLE
  checks=$(call GET "$D/uploads/$UPLOAD/checks" 200)
  echo "   checks passed: $(json passed.0.check.name <<<"$checks")"
}

# pyramid NAME INPUTS PARAMETERS: create an execution of raster-to-pyramid, launch it, wait for SUCCESS;
# sets STORED_DATA to its output
pyramid() {
  local name=$1 inputs=$2 parameters=$3 execution created
  echo "-- POST $D/processings/executions: raster-to-pyramid, inputs $inputs, parameters $parameters"
  created=$(post_json "$D/processings/executions" 201 "{
    \"processing\": \"$PROCESSING\",
    \"inputs\": $inputs,
    \"output\": {\"stored_data\": {\"name\": \"$name\", \"storage_tags\": [\"PYRAMIDE\"]}},
    \"parameters\": $parameters
  }")
  execution=$(json _id <<<"$created")
  STORED_DATA=$(json output.stored_data._id <<<"$created")
  echo "   execution $execution (CREATED), output stored data $STORED_DATA"
  echo "-- POST $D/processings/executions/$execution/launch"
  call POST "$D/processings/executions/$execution/launch" 200 >/dev/null
  wait_for "execution $execution" "$D/processings/executions/$execution" SUCCESS FAILURE ABORTED
  echo "   parameters used: $(json parameters <<<"$LAST" | tr -d ' \n')"
  echo "   last log line: $(call GET "$D/processings/executions/$execution/logs" 200 | node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>console.log(JSON.parse(s).at(-1)??""))')"
  local sd
  sd=$(call GET "$D/stored_data/$STORED_DATA" 200)
  echo "   stored data $STORED_DATA: $(json status <<<"$sd"), levels $(json type_infos.levels <<<"$sd" | tr -d ' \n'), $(json size 0 <<<"$sd") bytes"
}

# configuration STORED_DATA: the body of the WMTS-TMS configuration of the layer on that stored data
configuration() {
  cat <<EOF
{
  "type": "WMTS-TMS",
  "name": "Tutorial: France relief",
  "layer_name": "$LAYER",
  "type_infos": {
    "title": "France relief (tutorial)",
    "abstract": "The demo deliveries published by examples/tutorial.sh",
    "keywords": ["relief", "tutorial"],
    "used_data": [{"stored_data": "$1", "bottom_level": "$BOTTOM", "top_level": "0"}]
  },
  "getfeatureinfo": {"stored_data": true}
}
EOF
}

tile_status() {
  curl -sS -o "$TMP/tile" -w '%{http_code}' "$BASE/tiles/$LAYER/7/64/46.png" || die "GET $BASE/tiles/$LAYER/7/64/46.png: curl failed"
}

echo "== tuile at $BASE, layer $LAYER"
code=$(curl -sS -o /dev/null -w '%{http_code}' "$BASE/health") || die "no server at $BASE (start it with npm start)"
[ "$code" = 200 ] || die "GET $BASE/health answered $code"

echo "-- GET /api/datastores: the default datastore"
DATASTORE=$(call GET /api/datastores 200 | json 0._id)
D=/api/datastores/$DATASTORE
echo "   datastore $DATASTORE"
echo "-- GET $D/endpoints: the open WMTS-TMS endpoint (the first; the second is the private one)"
ENDPOINT=$(call GET "$D/endpoints" 200 | json 0._id)
echo "   endpoint $ENDPOINT"
echo "-- GET $D/processings: the id of raster-to-pyramid"
PROCESSING=$(call GET "$D/processings" 200 | json 0._id)
echo "   processing $PROCESSING"
taken=$(call GET "$D/configurations?layer_name=$LAYER" 200 | json 0._id '')
[ -z "$taken" ] || die "layer $LAYER is already configured (configuration $taken): run with another LAYER=..."

echo
echo "== 1-2. the north delivery"
deliver "France relief, north" "$NORTH_TIF"
NORTH_UPLOAD=$UPLOAD

echo
echo "== 3. its pyramid"
pyramid "tutorial_north" "{\"upload\": [\"$NORTH_UPLOAD\"]}" \
  "{\"tms\": \"PM\", \"compression\": \"png\", \"interpolation\": \"bicubic\", \"bottom\": $BOTTOM}"
NORTH=$STORED_DATA

echo
echo "== 4. a WMTS-TMS configuration of layer $LAYER on it"
echo "-- POST $D/configurations"
CONFIGURATION=$(post_json "$D/configurations" 201 "$(configuration "$NORTH")" | json _id)
echo "   configuration $CONFIGURATION (UNPUBLISHED)"

echo
echo "== 5. publication: an offering of the configuration on the endpoint"
echo "-- POST $D/configurations/$CONFIGURATION/offerings"
OFFERING=$(post_json "$D/configurations/$CONFIGURATION/offerings" 201 "{\"endpoint\": \"$ENDPOINT\", \"open\": true}" | json _id)
wait_for "offering $OFFERING" "$D/offerings/$OFFERING" PUBLISHED UNSTABLE
echo "   layer $LAYER is served at:"
json urls <<<"$LAST" | node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>{for(const u of JSON.parse(s))console.log(`     ${u.type.padEnd(13)} ${u.url}`)})'
code=$(tile_status)
echo "-- GET $BASE/tiles/$LAYER/7/64/46.png (the south, outside the north's limits): HTTP $code"
[ "$code" = 404 ] || die "the south tile answered $code before the south was published, expected 404"

echo
echo "== 6. the south delivery, and a pyramid chained on the north one"
deliver "France relief, south" "$SOUTH_TIF"
SOUTH_UPLOAD=$UPLOAD
pyramid "tutorial_north_south" "{\"upload\": [\"$SOUTH_UPLOAD\"], \"stored_data\": [\"$NORTH\"]}" "{}"
WHOLE=$STORED_DATA
echo "-- GET $D/stored_data/$WHOLE/dependencies"
call GET "$D/stored_data/$WHOLE/dependencies" 200 | json
echo
echo "-- DELETE $D/stored_data/$NORTH: refused while the chained pyramid uses it (409)"
call DELETE "$D/stored_data/$NORTH" 409 | json error_description | sed 's/^/   /'
echo

echo
echo "== 7. the configuration now uses the chained pyramid (nothing served changes yet)"
echo "-- PUT $D/configurations/$CONFIGURATION"
put_json "$D/configurations/$CONFIGURATION" 200 "$(configuration "$WHOLE")" >/dev/null
code=$(tile_status)
echo "-- GET $BASE/tiles/$LAYER/7/64/46.png: HTTP $code (the layer still serves the north only)"
[ "$code" = 404 ] || die "the south tile answered $code before the synchronisation, expected 404"

echo
echo "== 8. synchronisation of the offering"
echo "-- PUT $D/offerings/$OFFERING"
call PUT "$D/offerings/$OFFERING" 200 >/dev/null
wait_for "offering $OFFERING" "$D/offerings/$OFFERING" PUBLISHED UNSTABLE
code=$(tile_status)
echo "-- GET $BASE/tiles/$LAYER/7/64/46.png (the south): HTTP $code, $(wc -c <"$TMP/tile" | tr -d ' ') bytes"
[ "$code" = 200 ] || die "the south tile answered $code, expected 200"
echo
echo "== done: layer $LAYER (offering $OFFERING) serves the north and the south; viewer: $BASE/viewer/$LAYER"
