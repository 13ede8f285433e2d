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
