#!/bin/bash
# Runs the launch's stages in order. A stage is finished when its marker is in $VL_W/markers or its done
# line is in $VL_W/events (an earlier instance of the launch, pulled from the outputs store): after a
# container restart or on a new instance, finished stages are skipped. Stage commands come from
# $VL_W/stages.tsv (name<TAB>command). $VL_W/stage.pid holds this runner's pid while a stage runs (the
# idle watchdog). The W&B key goes to the stages' environment alone; each stage end asks for a sync.
set -o pipefail
M=$VL_W/markers S=$VL_W/.vl/secrets F=$VL_W/.vl/agent.fifo; mkdir -p "$M"
mapfile -t ST < "$VL_W/stages.tsv"
n=${#ST[@]} k=0
ev(){ echo "$1"; echo "$1" >> "$VL_W/events"; }
sync_asked(){ [ -p "$F" ] && echo sync 1<>"$F"; }
echo $$ > "$VL_W/stage.pid"
for line in "${ST[@]}"; do
  name=${line%%$'\t'*} cmd=${line#*$'\t'} k=$((k + 1))
  if [ -f "$M/$name.done" ] || grep -qF " $name: done at=" "$VL_W/events" 2>/dev/null; then
    echo "[vast-launch] stage $k/$n $name: already done, skipped"; continue
  fi
  echo "$name" > "$VL_W/current_stage"
  start=$(date +%s.%N)
  ev "[vast-launch] stage $k/$n $name: start at=$start"
  sync_asked  # the store's events say which stage runs, for a launch nobody follows
  if [ -r "$S/WANDB_API_KEY" ]; then WANDB_API_KEY=$(<"$S/WANDB_API_KEY") bash -c "$cmd"; else bash -c "$cmd"; fi; rc=$?
  end=$(date +%s.%N)
  echo "$name $start $end $rc" >> "$VL_W/stage_times"
  if [ $rc -ne 0 ]; then
    echo "$name" > "$VL_W/failed_stage"
    ev "[vast-launch] stage $k/$n $name: FAILED (exit $rc) at=$end start=$start"
    rm -f "$VL_W/stage.pid"
    exit $rc
  fi
  touch "$M/$name.done"
  ev "[vast-launch] stage $k/$n $name: done at=$end start=$start"
  sync_asked
done
rm -f "$VL_W/stage.pid" "$VL_W/current_stage"
