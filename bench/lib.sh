# Helpers the build benchmarks share (sourced; WORK names the bench's scratch folder).

# wall and CPU (user + sys) seconds of a command, appended to the named arrays
timed() {
  local -n wall_=$1 cpu_=$2
  shift 2
  /usr/bin/time -f '%e %U %S' -o "$WORK/time" "$@"
  local w u s
  read -r w u s < "$WORK/time"
  wall_+=("$w")
  cpu_+=("$(echo "$u + $s" | bc -l)")
}
archive() { stat -c %s "$1/tiles.pmtiles"; }
tiles() { node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1] + "/pyramid.json", "utf8")).stats.tiles)' "$1"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
