#!/usr/bin/env bash
# Builds the Go programs that the tests, `make stack` and the benchmarks start, each from a
# manifest in tools/:
#   otelcol-healthz  the project's OpenTelemetry Collector, from tools/otelcol/builder-config.yaml
#                    by the OpenTelemetry Collector Builder (the version its `# builder:` line names)
#   pushgateway      the Prometheus Pushgateway, from tools/pushgateway/go.mod and go.sum
#   otel-lambda-collector  opentelemetry-lambda's collector extension, from its source in
#                    tools/otel-lambda-collector/collector with the tags of its build-tags file
# Each lands in .tools/go/<name>-<key>/<name>, the key being the first 16 hex digits of the
# SHA-256 of its manifest (stack/gotools.py computes the same; for otel-lambda-collector,
# every file of its folder in byte order of their paths, as bench/collector_ext.py does): built already, nothing to do; a
# changed manifest builds anew. Go's own caches (GOMODCACHE, GOCACHE) are used as they are set.
# Without Go, one line says what to install, and exit 1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/.tools/go

# $GO names the go command; else go on PATH, else Go's usual place.
if [[ -n ${GO:-} ]]; then
  go=$(command -v "$GO" || true)
else
  go=$(command -v go || true)
  if [[ -z $go && -x /usr/local/go/bin/go ]]; then go=/usr/local/go/bin/go; fi
fi
if [[ -z $go ]]; then
  echo "make: go not found: install Go 1.26 (go on PATH) to build the OpenTelemetry Collector" \
    "and the Pushgateway from their modules (tools/)" >&2
  exit 1
fi
export PATH="$(dirname "$go"):$PATH"
# Go's caches live under $HOME by default; without one (a bare CI environment), under .tools/go.
if [[ -z ${HOME:-} ]]; then
  export GOPATH=${GOPATH:-$out/gopath} GOCACHE=${GOCACHE:-$out/cache}
fi

key() { cat "$@" | sha256sum | cut -c1-16; }

# Keep only the current build of `name`: older keys are manifests that no longer exist.
settle() {
  local name=$1 dir=$2 old
  for old in "$out/$name"-*/; do
    old=${old%/}
    [[ $old == "$dir" || $old == *-src || ! -d $old ]] || rm -rf "$old"
  done
}

report() {
  local name=$1 started=$2 binary=$3
  local size
  size=$(stat -c %s "$binary")
  echo "make: built $name in $((SECONDS - started)) s ($((size / 1024 / 1024)) MiB): ${binary#"$root"/}" >&2
}

build_otelcol() {
  local manifest=tools/otelcol/builder-config.yaml name=otelcol-healthz
  local dir binary builder_version builder src started=$SECONDS
  dir=$out/$name-$(key "$manifest")
  binary=$dir/$name
  [[ -x $binary ]] && return 0
  builder_version=$(sed -n 's|^# builder: go.opentelemetry.io/collector/cmd/builder \(v[0-9.]*\)$|\1|p' "$manifest")
  [[ -n $builder_version ]] || { echo "make: $manifest has no '# builder: ... vX.Y.Z' line" >&2; exit 1; }
  builder=$out/bin/builder-$builder_version
  if [[ ! -x $builder ]]; then
    echo "make: building the OpenTelemetry Collector Builder $builder_version" >&2
    mkdir -p "$out/bin"
    GOBIN=$out/bin.tmp go install "go.opentelemetry.io/collector/cmd/builder@$builder_version"
    mv "$out/bin.tmp/builder" "$builder"
    rmdir "$out/bin.tmp"
  fi
  # The manifest's output_path: sources generated there (relative to the repository root).
  src=$root/$(sed -n 's|^  output_path: *||p' "$manifest")
  echo "make: building $name from $manifest (the first build takes minutes)" >&2
  rm -rf "$src"
  "$builder" --config "$manifest" >"$out/$name-build.log" 2>&1 || {
    tail -30 "$out/$name-build.log" >&2
    echo "make: building $name failed: $out/$name-build.log" >&2
    exit 1
  }
  mkdir -p "$dir.tmp"
  mv "$src/$name" "$dir.tmp/$name"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  settle "$name" "$dir"
  report "$name" "$started" "$binary"
}

build_pushgateway() {
  local module=tools/pushgateway name=pushgateway
  local dir binary version started=$SECONDS
  dir=$out/$name-$(key "$module/go.mod" "$module/go.sum")
  binary=$dir/$name
  [[ -x $binary ]] && return 0
  echo "make: building $name from $module/go.mod" >&2
  version=$(cd "$module" && go list -m -f '{{.Version}}' github.com/prometheus/pushgateway)
  # The version the upstream build (promu) stamps, so /api/v1/status and --version tell it.
  local pkg=github.com/prometheus/common/version
  local ldflags="-s -w -X $pkg.Version=${version#v} -X $pkg.Branch=HEAD -X $pkg.BuildUser=healthz-lambda"
  mkdir -p "$dir.tmp"
  (cd "$module" && go build -trimpath -ldflags "$ldflags" -o "$dir.tmp/$name" \
    github.com/prometheus/pushgateway)
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  settle "$name" "$dir"
  report "$name" "$started" "$binary"
}

# Every file of a folder, in byte order of their paths (no NUL in them: ours).
tree_files() { (cd "$root" && find "$1" -type f -print | LC_ALL=C sort); }

build_otel_lambda_collector() {
  local module=tools/otel-lambda-collector name=otel-lambda-collector
  local dir binary tags started=$SECONDS
  local -a files
  mapfile -t files < <(tree_files "$module")
  dir=$out/$name-$(key "${files[@]}")
  binary=$dir/$name
  [[ -x $binary ]] && return 0
  tags=$(tr -d '[:space:]' <"$module/build-tags")
  echo "make: building $name from $module (the first build takes minutes)" >&2
  mkdir -p "$dir.tmp"
  (cd "$module/collector" && CGO_ENABLED=0 go build -mod=readonly -trimpath -tags "$tags" \
    -ldflags "-s -w -X main.Version=c72580eb-healthz" -o "$dir.tmp/$name" .) \
    >"$out/$name-build.log" 2>&1 || {
    tail -30 "$out/$name-build.log" >&2
    echo "make: building $name failed: $out/$name-build.log" >&2
    exit 1
  }
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  settle "$name" "$dir"
  report "$name" "$started" "$binary"
}

mkdir -p "$out"
build_otelcol
build_pushgateway
build_otel_lambda_collector
