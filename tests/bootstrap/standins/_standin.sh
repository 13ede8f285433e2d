# shellcheck shell=bash
# Shared by the stand-ins: record every call, fail the one the test asks for.
set -euo pipefail
: "${STANDIN_DIR:?the stand-ins need STANDIN_DIR}"

# One line per call in calls.log: the tool, then its arguments, tab-separated.
record() {
  local IFS=$'\t'
  printf '%s\n' "$*" >>"$STANDIN_DIR/calls.log"
}

# STANDIN_FAIL=tool:glob fails the call whose space-joined arguments match the glob, after printing
# STANDIN_OUTPUT (what the failing tool said).
# shellcheck disable=SC2053 # the right-hand side is a glob on purpose
fail_if_asked() {
  local tool=$1
  shift
  [[ ${STANDIN_FAIL:-} == "$tool":* && "$*" == ${STANDIN_FAIL#*:} ]] || return 0
  printf '%s' "${STANDIN_OUTPUT:-}"
  echo "$tool: simulated failure of '$tool $*'" >&2
  exit 1
}

standin() {
  record "$@"
  fail_if_asked "$@"
}

# The value after option $1 in the remaining arguments.
option() {
  local name=$1
  shift
  while (($#)); do
    [[ $1 != "$name" ]] || { echo "$2" && return; }
    shift
  done
}

# Inside a container: the host path of a container path, through the -v mounts that the docker
# stand-in passes on in STANDIN_MOUNTS (one host:container[:mode] per line).
host_path() {
  local host inside
  while IFS=: read -r host inside _; do
    [[ $1 != "$inside"* ]] || { echo "$host${1#"$inside"}" && return; }
  done <<<"${STANDIN_MOUNTS:?only inside a container}"
  echo "no mount holds $1" >&2
  exit 1
}
