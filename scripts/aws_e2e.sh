#!/usr/bin/env bash
# Opt-in end-to-end check against a real AWS account: deploy every stack (trains on a GPU instance
# and waits for its signal), invoke the endpoint with the recipe's sentence, destroy everything.
# It costs real money (GPU instance, NAT gateway, endpoint) and is never run by CI.
#
#   scripts/aws_e2e.sh --yes [cdk options...]   or   CONFIRM=1 scripts/aws_e2e.sh [cdk options...]
#
# cdk options (e.g. -c key=value) go to both deploy and destroy. PYTHON picks the interpreter that
# runs inference.predict (default: python, e.g. from the activated .venv).
set -euo pipefail

SENTENCE="Covid cases are increasing fast!"

refuse() {
  echo "aws_e2e: $*" >&2
  exit 2
}

confirmed() {
  [[ ${CONFIRM:-} == 1 ]] && return
  [[ ${1:-} == --yes ]]
}

destroy() {
  local rc=$?
  echo "aws_e2e: destroying every stack (exit status so far: $rc)"
  if ! npx cdk destroy --all --force "${CDK_OPTIONS[@]}"; then
    echo "aws_e2e: DESTROY FAILED: resources may still be billing; run 'npx cdk destroy --all'" >&2
    rc=1
  fi
  exit "$rc"
}

main() {
  confirmed "$@" || refuse "this deploys billable AWS resources; pass --yes or set CONFIRM=1"
  [[ ${1:-} != --yes ]] || shift
  CDK_OPTIONS=("$@")
  aws sts get-caller-identity >/dev/null || refuse "no usable AWS credentials (aws sts get-caller-identity)"
  cd "$(dirname "$0")/.."
  # From here on, whatever happens (failure, Ctrl-C), the stacks are destroyed.
  trap destroy EXIT
  npx cdk deploy --all --require-approval never "${CDK_OPTIONS[@]}"
  echo "aws_e2e: invoking the endpoint with: $SENTENCE (the recipe answers negative)"
  "${PYTHON:-python}" -m inference.predict "$SENTENCE"
}

main "$@"
