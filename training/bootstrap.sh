#!/usr/bin/env bash
# Training instance bootstrap: fetch the code, build the training image, train on every GPU,
# package model.tar.gz, upload it, signal the CloudFormation WaitCondition, power off.
# EC2 user data (stacks/user_data.py): `export VAR=value` lines, then this file gzip-compressed,
# unpacked to $WORK_ROOT/bootstrap.sh and run; tests run this file with the variables in the
# environment. The optional variables below have defaults; PER_BOOT_DIR is where cloud-init looks
# for scripts to run at each boot.
# A training cluster (stacks/training_cluster.py) runs this on each of its NODE_COUNT instances:
# every node trains in one torchrun job whose rendezvous is node 0 (NODE0_ADDR); the node whose
# processes include global rank 0 packages, uploads and signals SUCCESS; any node that fails
# signals FAILURE.
set -euo pipefail

REQUIRED_VARS=(AWS_REGION RUN_ID ARTIFACT_BUCKET MODEL_S3_URI METRICS_S3_URI CHECKPOINT_S3_URI
  TRAINING_ASSET_S3_URI INFERENCE_ASSET_S3_URI DOCKER_ASSET_S3_URI TRAINING_IMAGE_URI
  WAIT_HANDLE_URL LOG_GROUP_NAME MAX_RUNTIME_MINUTES)
OPTIONAL_VARS=(TRAIN_ARGS KEEP_INSTANCE_ON_FAILURE WORK_ROOT CHECKPOINT_SYNC_SECONDS PER_BOOT_DIR
  METRICS_NAMESPACE NODE_COUNT NODE_RANK NODE0_ADDR EFA_INTERFACES EFA_DEVICE_DIR RENDEZVOUS_PORT
  RENDEZVOUS_TIMEOUT_SECONDS TRAIN_DATA_S3_URI VALIDATION_DATA_S3_URI TEST_DATA_S3_URI LABELS)
TRAIN_ARGS=${TRAIN_ARGS:-}
TRAIN_DATA_S3_URI=${TRAIN_DATA_S3_URI:-} # the user's files (trainDataUrl, ...); empty: the hub dataset
VALIDATION_DATA_S3_URI=${VALIDATION_DATA_S3_URI:-}
TEST_DATA_S3_URI=${TEST_DATA_S3_URI:-}
LABELS=${LABELS:-} # comma-separated class names; empty: training.train's default
KEEP_INSTANCE_ON_FAILURE=${KEEP_INSTANCE_ON_FAILURE:-false}
WORK_ROOT=${WORK_ROOT:-/opt/pt2}
CHECKPOINT_SYNC_SECONDS=${CHECKPOINT_SYNC_SECONDS:-300}
PER_BOOT_DIR=${PER_BOOT_DIR:-/var/lib/cloud/scripts/per-boot}
METRICS_NAMESPACE=${METRICS_NAMESPACE:-} # empty: no step metrics
NODE_COUNT=${NODE_COUNT:-1} # above 1: a training cluster, this instance its node NODE_RANK
NODE_RANK=${NODE_RANK:-0}
NODE0_ADDR=${NODE0_ADDR:-}
EFA_INTERFACES=${EFA_INTERFACES:-0}
EFA_DEVICE_DIR=${EFA_DEVICE_DIR:-/dev/infiniband}
RENDEZVOUS_PORT=${RENDEZVOUS_PORT:-29400} # torchrun's c10d default
# How long a node waits at the rendezvous for node 0's store and for the other nodes, which pull
# and build the image at their own pace: torch's join default; its read default (60 s) would fail
# a node that reaches torchrun more than a minute before node 0.
RENDEZVOUS_TIMEOUT_SECONDS=${RENDEZVOUS_TIMEOUT_SECONDS:-600}
export HOME=${HOME:-/root} # unset under cloud-init; docker login and the AWS CLI want one

PROJECT_DIR=$WORK_ROOT/project # build context: training/ inference/ (the endpoint's pins) docker/
OUTPUT_DIR=$WORK_ROOT/output   # training's --output-dir: checkpoints/ model/ metrics.json
CACHE_DIR=$WORK_ROOT/cache     # hub and compile caches, kept
LOG_FILE=$WORK_ROOT/logs/bootstrap.log
SHIPPED_LINES=$WORK_ROOT/logs/shipped-lines # LOG_FILE's lines in CloudWatch (a file: subshells ship too)
IMAGE=pt2-training
CURRENT_STEP=start
SYNC_PID=
INTERRUPTED=false

# Only outside steps: run_step already copies a step's output to the log.
log() { printf '%s bootstrap: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" | tee -a "$LOG_FILE"; }

# The pipeline into tee ends before the next line runs, so a failure report sees every line.
run_step() {
  CURRENT_STEP=$1
  shift
  local started=$SECONDS
  log "step $CURRENT_STEP: started"
  "$@" 2>&1 | tee -a "$LOG_FILE"
  log "step $CURRENT_STEP: done"
  step_metric "$CURRENT_STEP" $((SECONDS - started))
}

# An EMF line (training/emf.py): CloudWatch makes it a StepSeconds metric once the log ships.
step_metric() {
  [[ -n $METRICS_NAMESPACE ]] || return 0
  local head
  printf -v head '{"_aws":{"Timestamp":%s000,"CloudWatchMetrics":[{"Namespace":"%s","Dimensions":[["RunId","Step"]],' \
    "$(date +%s)" "$METRICS_NAMESPACE"
  printf '%s"Metrics":[{"Name":"StepSeconds","Unit":"Seconds"}]}]},"RunId":"%s","Step":"%s","StepSeconds":%s}\n' \
    "$head" "$RUN_ID" "$1" "$2" >>"$LOG_FILE"
}

check_config() {
  local name problems=() count='^[1-9][0-9]*$'
  for name in "${REQUIRED_VARS[@]}"; do
    [[ -n ${!name:-} ]] || problems+=("missing required variable $name")
  done
  [[ ${MAX_RUNTIME_MINUTES:-} =~ $count ]] || problems+=("MAX_RUNTIME_MINUTES: not a positive integer")
  [[ $CHECKPOINT_SYNC_SECONDS =~ $count ]] || problems+=("CHECKPOINT_SYNC_SECONDS: not a positive integer")
  [[ $KEEP_INSTANCE_ON_FAILURE =~ ^(true|false)$ ]] || problems+=("KEEP_INSTANCE_ON_FAILURE: not true/false")
  mapfile -t -O "${#problems[@]}" problems < <(cluster_config_problems)
  # The outputs must land where the stack granted write access and the Model looks.
  for name in MODEL_S3_URI METRICS_S3_URI CHECKPOINT_S3_URI; do
    [[ ${!name:-} == "s3://${ARTIFACT_BUCKET:-}/"* ]] || problems+=("$name: not in the artifact bucket")
  done
  ((${#problems[@]} == 0)) || { printf 'config: %s\n' "${problems[@]}" >&2; return 1; }
}

cluster_config_problems() {
  local count='^[1-9][0-9]*$'
  [[ $NODE_COUNT =~ $count ]] || { echo "NODE_COUNT: not a positive integer" && return; }
  [[ $NODE_RANK =~ ^[0-9]+$ ]] && ((NODE_RANK < NODE_COUNT)) || echo "NODE_RANK: not from 0 to $((NODE_COUNT - 1))"
  ((NODE_COUNT > 1)) || return 0
  [[ -n $NODE0_ADDR ]] || echo "NODE0_ADDR: a cluster needs node 0's address"
  [[ $EFA_INTERFACES =~ $count ]] || echo "EFA_INTERFACES: not a positive integer"
  [[ $RENDEZVOUS_TIMEOUT_SECONDS =~ $count ]] || echo "RENDEZVOUS_TIMEOUT_SECONDS: not a positive integer"
}

# "node 1 of 4: " in a cluster, nothing on a single instance.
node_label() { ((NODE_COUNT == 1)) || printf 'node %s of %s: ' "$NODE_RANK" "$NODE_COUNT"; }

# CloudWatch Logs streams: <run>/<name>, and <run>/node-<rank>/<name> for each node of a cluster.
log_stream() { ((NODE_COUNT == 1)) && echo "$RUN_ID/$1" || echo "$RUN_ID/node-$NODE_RANK/$1"; }

# The WaitCondition times out after MAX_RUNTIME_MINUTES: a hung step must not bill any longer.
schedule_watchdog() { shutdown -h "+$MAX_RUNTIME_MINUTES" "pt2 bootstrap watchdog: run $RUN_ID overran"; }

# cloud-init runs user data once per instance; this copy resumes the run at every later boot.
install_per_boot() {
  local name wrapper=$PER_BOOT_DIR/pt2-bootstrap.sh
  mkdir -p "$PER_BOOT_DIR"
  # Both files hold the presigned WaitCondition URL. $0 is that very copy on a later boot.
  install -m 0700 "$0" "$WORK_ROOT/bootstrap.sh.new"
  mv "$WORK_ROOT/bootstrap.sh.new" "$WORK_ROOT/bootstrap.sh"
  {
    echo '#!/bin/bash'
    for name in "${REQUIRED_VARS[@]}" "${OPTIONAL_VARS[@]}"; do
      printf 'export %s=%q\n' "$name" "${!name}"
    done
    printf 'exec bash %q\n' "$WORK_ROOT/bootstrap.sh"
  } >"$wrapper.new"
  chmod 0700 "$wrapper.new"
  mv "$wrapper.new" "$wrapper"
  echo "installed $wrapper"
}

# head-object, not `s3 ls`, which matches key prefixes. Any error means "train": the safe side.
model_already_uploaded() {
  local path=${MODEL_S3_URI#s3://}
  aws s3api head-object --bucket "${path%%/*}" --key "${path#*/}" >/dev/null 2>&1
}

fetch_uploaded_metrics() {
  aws s3 cp --only-show-errors "$METRICS_S3_URI" "$OUTPUT_DIR/metrics.json" ||
    echo '{}' >"$OUTPUT_DIR/metrics.json"
}

# The user's data files, one "split uri" line each.
data_objects() {
  local split uri
  for split in train validation test; do
    uri=${split^^}_DATA_S3_URI
    [[ -z ${!uri} ]] || echo "$split ${!uri}"
  done
}

# A split's file in the output mount; the extension tells training.train how to read it.
data_file() { echo "data/$1.${2##*.}"; }

# Seconds, before the image pull: head-object needs only the s3:GetObject that the run policy grants
# on exactly these objects. Without s3:ListBucket, S3 answers a missing key with 403 as well.
check_data() {
  local split uri path answer failed=0
  while read -r split uri; do
    path=${uri#s3://}
    if ! answer=$(aws s3api head-object --bucket "${path%%/*}" --key "${path#*/}" \
      --query ContentLength --output text 2>&1); then
      echo "error: $split data $uri: $(head_object_problem "$answer")" >&2
      failed=1
    elif [[ $answer == 0 ]]; then
      echo "error: $split data $uri: the object is empty" >&2
      failed=1
    else
      echo "$split data $uri: $answer bytes"
    fi
  done < <(data_objects)
  return "$failed"
}

head_object_problem() {
  case $1 in
  *"(404)"*) echo "not found (404): no such bucket or key" ;;
  *"(403)"*) echo "access denied (403): no such key (the instance may not list the bucket, so S3 says 403 for" \
    "a missing key too), or the bucket's policy refuses the instance role" ;;
  *) echo "cannot be checked: $(cli_error "$1")" ;;
  esac
}

# The line of the AWS CLI's output that says what went wrong.
cli_error() { grep -m1 'An error occurred' <<<"$1" || tail -n1 <<<"$1"; }

fetch_data() {
  local split uri answer hint=
  mkdir -p "$OUTPUT_DIR/data"
  while read -r split uri; do
    answer=$(aws s3 cp --only-show-errors "$uri" "$OUTPUT_DIR/$(data_file "$split" "$uri")" 2>&1) && continue
    [[ $answer != *kms* ]] || hint="; an object encrypted with a KMS key needs -c dataKmsKeyArn=<that key's ARN>"
    echo "error: $split data $uri: cannot be copied: $(cli_error "$answer")$hint" >&2
    return 1
  done < <(data_objects)
}

# training.train's flags for the labels and the fetched files, one word a line.
data_flags() {
  local split uri
  [[ -z $LABELS ]] || printf '%s\n' --labels "$LABELS"
  while read -r split uri; do
    printf '%s\n' "--$split-file" "/workspace/output/$(data_file "$split" "$uri")"
  done < <(data_objects)
}

fetch_assets() {
  local name uri
  for name in training inference docker; do
    uri=${name^^}_ASSET_S3_URI
    aws s3 cp --only-show-errors "${!uri}" "$WORK_ROOT/assets/$name.zip"
    rm -rf "${PROJECT_DIR:?}/$name"
    python3 -m zipfile -e "$WORK_ROOT/assets/$name.zip" "$PROJECT_DIR/$name" # no unzip needed
  done
}

ecr_login() {
  aws ecr get-login-password --region "$AWS_REGION" |
    docker login --username AWS --password-stdin "${TRAINING_IMAGE_URI%%/*}"
}

pull_image() { docker pull "$TRAINING_IMAGE_URI"; }

build_image() {
  docker build --build-arg "BASE_IMAGE=$TRAINING_IMAGE_URI" -t "$IMAGE" \
    -f "$PROJECT_DIR/docker/Dockerfile" "$PROJECT_DIR"
}

restore_checkpoints() { aws s3 sync --only-show-errors "$CHECKPOINT_S3_URI" "$OUTPUT_DIR/checkpoints"; }

# No --delete: a half-empty local folder must never erase the run's saved progress.
sync_checkpoints_up() { aws s3 sync --only-show-errors "$OUTPUT_DIR/checkpoints" "$CHECKPOINT_S3_URI"; }

checkpoint_sync_loop() {
  local nap
  trap 'kill "$nap" 2>/dev/null; exit 0' TERM
  while true; do
    sleep "$CHECKPOINT_SYNC_SECONDS" &
    nap=$!
    wait "$nap"
    sync_checkpoints_up >>"$LOG_FILE" 2>&1 || log "checkpoint sync failed, retrying later"
  done
}

start_checkpoint_sync() {
  checkpoint_sync_loop &
  SYNC_PID=$!
}

stop_checkpoint_sync() {
  kill "$SYNC_PID" 2>/dev/null || true
  wait "$SYNC_PID" 2>/dev/null || true
  SYNC_PID=
}

# Each EFA interface of the instance is one device here; missing ones would make NCCL fall back to
# TCP sockets without a word, at a fraction of the bandwidth.
check_efa_devices() {
  local found=("$EFA_DEVICE_DIR"/uverbs*)
  [[ -e ${found[0]} ]] || found=()
  echo "EFA devices: ${found[*]:-none}"
  ((${#found[@]} == EFA_INTERFACES)) || {
    echo "error: expected $EFA_INTERFACES EFA devices under $EFA_DEVICE_DIR, found ${#found[@]}" >&2
    return 1
  }
}

# A cluster node's container takes the host's network (the rendezvous and NCCL's sockets reach the
# other nodes directly) and every EFA device, with libfabric's EFA provider chosen, as the DLC's EC2
# documentation and its own EFA test run it; fork-safe verbs (that test's setting: inductor's
# compile workers fork); NCCL says at start which network it picked.
cluster_container_options() {
  local device
  ((NODE_COUNT > 1)) || return 0
  printf '%s\n' --network host -e FI_PROVIDER=efa -e RDMAV_FORK_SAFE=1 -e NCCL_DEBUG=INFO -e NCCL_DEBUG_SUBSYS=INIT,NET
  for device in "$EFA_DEVICE_DIR"/uverbs*; do
    printf '%s\n' --device "$device"
  done
}

# torchrun's options: a process per GPU, on one instance on a free local port (--standalone); in a
# cluster, one job of NODE_COUNT nodes whose c10d rendezvous node 0 hosts. A node that gets there
# first waits for node 0's store (read_timeout) and for the others (join_timeout) as long. torchrun
# ignores --node-rank with c10d (it orders the nodes itself), so global rank 0 may run on any node.
launcher_options() {
  local gpus=$1 timeout=$RENDEZVOUS_TIMEOUT_SECONDS
  if ((NODE_COUNT == 1)); then
    printf '%s\n' --standalone "--nproc_per_node=$gpus"
    return
  fi
  printf '%s\n' --nnodes "$NODE_COUNT" --nproc-per-node "$gpus" --rdzv-backend c10d \
    --rdzv-endpoint "$NODE0_ADDR:$RENDEZVOUS_PORT" --rdzv-id "$RUN_ID" \
    --rdzv-conf "is_host=$((NODE_RANK == 0)),join_timeout=$timeout,read_timeout=$timeout"
}

# DLC entrypoint: eval "$@". %q words pass it unchanged; exec hands SIGTERM to the command.
exec_line() { printf 'exec' && printf ' %q' "$@"; }

# Code and output are mounted: the image only provides the environment.
container() {
  docker run --rm --init -v "$PROJECT_DIR:/workspace/project:ro" -v "$OUTPUT_DIR:/workspace/output" \
    -w /workspace/project "$@"
}

train() {
  local gpus extra launcher cluster data
  gpus=$(nvidia-smi -L | grep -c '^GPU ' || true)
  ((gpus > 0)) || { echo "nvidia-smi -L lists no GPU" >&2; return 1; }
  read -ra extra <<<"$TRAIN_ARGS" # split on spaces, no shell quoting
  mapfile -t launcher < <(launcher_options "$gpus")
  mapfile -t cluster < <(cluster_container_options)
  mapfile -t data < <(data_flags)
  # What an earlier boot left must not pass for this run's model (holds_the_model).
  rm -rf "$OUTPUT_DIR/model" "$OUTPUT_DIR/metrics.json" "$OUTPUT_DIR/model.tar.gz"
  echo "$(node_label)training on $gpus GPU(s)"
  container --gpus all --shm-size=1g --ulimit memlock=-1 --ulimit stack=67108864 -v "$CACHE_DIR:/cache" \
    -e HF_HOME=/cache/hf -e TORCHINDUCTOR_CACHE_DIR=/cache/inductor -e TRITON_CACHE_DIR=/cache/triton \
    --log-driver awslogs --log-opt "awslogs-region=$AWS_REGION" \
    --log-opt "awslogs-group=$LOG_GROUP_NAME" --log-opt "awslogs-stream=$(log_stream training)" \
    "${cluster[@]}" -e RUN_ID -e METRICS_NAMESPACE "$IMAGE" \
    "$(exec_line torchrun "${launcher[@]}" -m training.train --output-dir /workspace/output "${extra[@]}" \
      "${data[@]}")"
}

# Trainer writes the model and metrics.json from global rank 0 only: in a cluster, on one node.
holds_the_model() { ((NODE_COUNT == 1)) || [[ -f $OUTPUT_DIR/metrics.json ]]; }

# Downloads the endpoint's locked wheels here, where there is network, into the archive. No handler: the
# inference stack puts the deployed one in (functions/serving_archive.py), so editing it trains nothing.
package_model() {
  container "$IMAGE" "$(exec_line python -m training.package --model-dir /workspace/output/model \
    --code-dir inference --no-handler --output /workspace/output/model.tar.gz --wheels /workspace/output/wheels \
    --download)"
}

# Metrics first: the model's presence is what marks the run as done for a later boot.
upload_artifacts() {
  aws s3 cp --only-show-errors "$OUTPUT_DIR/metrics.json" "$METRICS_S3_URI"
  aws s3 cp --only-show-errors "$OUTPUT_DIR/model.tar.gz" "$MODEL_S3_URI"
}

# python3 ships with the DLAMI (jq may not) and escapes JSON properly. Given a log file, the
# reason names the newest `error:` line the project's tools wrote (torchrun's summary pushes it out
# of the tail), then ends with the newest lines, cut so that the reason stays within 1,000 characters.
signal_body() {
  python3 - "$@" <<'PY'
import json, sys
status, unique_id, data, reason, log_file = sys.argv[1:]
if log_file:
    with open(log_file, errors="replace") as f:
        lines = f.read().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    if errors:
        reason += ": " + errors[-1][:400]
    tail = "\n".join(lines[-20:])
    reason += "; last log lines:\n"
    room = 1000 - len(reason)
    reason += tail[-room:]
print(json.dumps({"Status": status, "UniqueId": unique_id, "Data": data, "Reason": reason}))
PY
}

# usage: send_signal STATUS DATA REASON [LOG_FILE]. Each node of a cluster signals under its own id.
# The log ships first: a FAILURE makes CloudFormation roll back, and the instance may go with it.
send_signal() {
  local id=${RUN_ID:-bootstrap}
  ((NODE_COUNT == 1)) || id+="-node-$NODE_RANK"
  signal_body "$1" "$id" "$2" "$3" "${4:-}" >"$WORK_ROOT/signal.json"
  ship_log
  curl -sS --fail --retry 5 --retry-connrefused --max-time 60 -X PUT -H 'Content-Type:' \
    --data-binary "@$WORK_ROOT/signal.json" "$WAIT_HANDLE_URL"
  echo "sent $1 signal"
}

signal_success() {
  local metrics
  metrics=$(python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin), separators=(",", ":")))' \
    <"$OUTPUT_DIR/metrics.json")
  send_signal SUCCESS "$metrics" "run $RUN_ID: model uploaded to $MODEL_S3_URI"
}

# The lines not shipped yet; a failure to ship is logged, never fatal.
ship_log() {
  [[ -n ${LOG_GROUP_NAME:-} && -n ${RUN_ID:-} ]] || return 0
  ship_new_lines || log "could not ship the log to CloudWatch"
}

# put-log-events takes at most 10,000 events and 1 MB per call: one call per batch file.
ship_new_lines() {
  local batch stream dir=$WORK_ROOT/logs/batches
  stream=$(log_stream bootstrap)
  rm -rf "$dir"
  mkdir -p "$dir"
  python3 - "$LOG_FILE" "$dir" "$SHIPPED_LINES" <<'PY'
import json, os, sys, time
log_file, out_dir, shipped_file = sys.argv[1:]
shipped = int(open(shipped_file).read()) if os.path.exists(shipped_file) else 0
now, batches, size = int(time.time() * 1000), [[]], 0
with open(log_file, errors="replace") as f:
    lines = f.read().splitlines()
with open(shipped_file + ".new", "w") as f:  # moved in place once sent
    f.write(str(len(lines)))
for line in filter(None, lines[shipped:]):
    message = line.encode()[:200_000].decode(errors="ignore")
    cost = len(message.encode()) + 26
    if size + cost > 1_000_000 or len(batches[-1]) == 10_000:
        batches.append([])
        size = 0
    batches[-1].append({"timestamp": now, "message": message})
    size += cost
for i, batch in enumerate(b for b in batches if b):
    with open(f"{out_dir}/{i:05d}.json", "w") as f:
        json.dump(batch, f)
PY
  # Once a boot; an earlier boot may have created the stream already.
  [[ -f $SHIPPED_LINES ]] ||
    aws logs create-log-stream --log-group-name "$LOG_GROUP_NAME" --log-stream-name "$stream" 2>/dev/null || true
  for batch in "$dir"/*.json; do
    [[ -e $batch ]] || continue # nothing new
    aws logs put-log-events --log-group-name "$LOG_GROUP_NAME" --log-stream-name "$stream" \
      --log-events "file://$batch" >/dev/null || return 1
  done
  mv "$SHIPPED_LINES.new" "$SHIPPED_LINES"
}

keep_instance_message() {
  local id
  id=$(cat /var/lib/cloud/data/instance-id 2>/dev/null || echo '<instance-id>')
  log "KEEP_INSTANCE_ON_FAILURE=true: staying up for debugging until the watchdog powers off"
  log "(${MAX_RUNTIME_MINUTES:-?} min after start). Connect: aws ssm start-session --target $id"
}

# Every exit ends here: report, ship the log, power off (the stack makes that a termination).
on_exit() {
  local rc=$? power_off=true
  set +eu # best effort from here on; a config failure may have left variables unset
  if [[ -n $SYNC_PID ]]; then
    stop_checkpoint_sync
    sync_checkpoints_up >>"$LOG_FILE" 2>&1 || log "final checkpoint sync failed"
  fi
  # A signal means the machine is going down (reboot: per-boot resumes; the watchdog) or an
  # operator stepped in: reporting a failure or forcing a power-off would be wrong either way.
  if [[ $INTERRUPTED == true ]]; then
    log "step $CURRENT_STEP: stopped by a signal; no WaitCondition signal, no shutdown"
    power_off=false
  elif ((rc != 0)); then
    log "step $CURRENT_STEP: failed with exit code $rc"
    [[ -z $WAIT_HANDLE_URL ]] ||
      send_signal FAILURE "" "$(node_label)step $CURRENT_STEP failed (exit $rc)" "$LOG_FILE" 2>&1 | tee -a "$LOG_FILE"
    [[ $KEEP_INSTANCE_ON_FAILURE != true ]] || { keep_instance_message; power_off=false; }
  fi
  [[ $power_off == false ]] || log "shutting down"
  ship_log # the lines since the signal
  [[ $power_off == false ]] || shutdown -h now
}

main() {
  trap on_exit EXIT
  trap 'INTERRUPTED=true; exit 143' TERM
  trap 'INTERRUPTED=true; exit 130' INT
  trap 'INTERRUPTED=true; exit 129' HUP
  mkdir -p "$WORK_ROOT/logs" "$OUTPUT_DIR"
  [[ ! -f $LOG_FILE ]] || mv "$LOG_FILE" "$LOG_FILE.previous" # shipped by the earlier boot
  rm -f "$SHIPPED_LINES"
  log "run ${RUN_ID:-?}: bootstrap started"
  run_step check-config check_config
  export AWS_DEFAULT_REGION=$AWS_REGION
  step_metric boot "$(cut -d' ' -f1 /proc/uptime)"
  run_step schedule-watchdog schedule_watchdog
  run_step install-per-boot install_per_boot
  CURRENT_STEP=check-model
  if model_already_uploaded; then
    log "$MODEL_S3_URI exists: nothing to train"
    ((NODE_RANK == 0)) || return 0 # node 0 reports it
    run_step fetch-metrics fetch_uploaded_metrics
    run_step signal-success signal_success
    return
  fi
  ((NODE_COUNT == 1)) || run_step check-efa check_efa_devices
  if [[ -n $TRAIN_DATA_S3_URI ]]; then
    run_step check-data check_data
    run_step fetch-data fetch_data
  fi
  run_step fetch-assets fetch_assets
  run_step ecr-login ecr_login
  run_step pull-image pull_image
  run_step build-image build_image
  run_step restore-checkpoints restore_checkpoints
  start_checkpoint_sync
  run_step train train
  stop_checkpoint_sync
  run_step sync-checkpoints sync_checkpoints_up
  holds_the_model || { log "global rank 0 ran on another node: that node uploads the model" && return; }
  run_step package package_model
  run_step upload upload_artifacts
  run_step signal-success signal_success
}

main
