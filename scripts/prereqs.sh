#!/usr/bin/env bash
# What `make test` needs besides Python: the binaries the tests start, from Debian packages.
# Present: nothing to do. Missing, as root with apt-get: install them. Otherwise: one line
# saying what to install, and exit 1. (The tests look the binaries up as stack/_proc.py does:
# $PUSHGATEWAY_BIN and $PROMETHEUS_BIN override PATH; promtool is looked up on PATH.)
set -euo pipefail

# binary (as the message names it), Debian package, names to look for, override variable
needs=(
  "prometheus-pushgateway prometheus-pushgateway prometheus-pushgateway,pushgateway PUSHGATEWAY_BIN"
  "prometheus prometheus prometheus PROMETHEUS_BIN"
  "promtool prometheus promtool -"
)

found() {
  local names=$1 override=$2 name
  if [[ $override != - && -n ${!override:-} ]]; then
    command -v "${!override}" >/dev/null 2>&1
    return
  fi
  for name in ${names//,/ }; do
    command -v "$name" >/dev/null 2>&1 && return 0
  done
  return 1
}

check() {
  missing=()
  packages=()
  local need binary package names override
  for need in "${needs[@]}"; do
    read -r binary package names override <<<"$need"
    if ! found "$names" "$override"; then
      missing+=("$binary")
      [[ " ${packages[*]} " == *" $package "* ]] || packages+=("$package")
    fi
  done
  [[ ${#missing[@]} -eq 0 ]]
}

joined() {
  local out=$1
  shift
  for item; do out+=", $item"; done
  echo "$out"
}

check && exit 0

if [[ $(id -u 2>/dev/null) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "make: installing the Debian packages ${packages[*]} (missing $(joined "${missing[@]}"))" >&2
  if apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${packages[@]}" >/dev/null &&
    check; then
    exit 0
  fi
fi

echo "make: missing $(joined "${missing[@]}"): install the Debian packages ${packages[*]}" \
  "(as root: apt-get install ${packages[*]})" >&2
exit 1
