#!/bin/bash
# Runs the launch's stages in order. A stage marker in $VL_W/markers means "finished": after a
# container restart, finished stages are skipped. Stage commands come from $VL_W/stages.tsv
# (name<TAB>command). $VL_W/stage.pid holds this runner's pid while a stage runs (the idle watchdog).
set -o pipefail
M=$VL_W/markers; mkdir -p "$M"
mapfile -t S < "$VL_W/stages.tsv"
n=${#S[@]} k=0
echo $$ > "$VL_W/stage.pid"
for line in "${S[@]}"; do
  name=${line%%$'\t'*} cmd=${line#*$'\t'} k=$((k + 1))
  if [ -f "$M/$name.done" ]; then echo "[vast-launch] stage $k/$n $name: already done, skipped"; continue; fi
  echo "$name" > "$VL_W/current_stage"
  start=$(date +%s.%N)
  echo "[vast-launch] stage $k/$n $name: start at=$start"
  bash -c "$cmd"; rc=$?
  end=$(date +%s.%N)
  echo "$name $start $end $rc" >> "$VL_W/stage_times"
  if [ $rc -ne 0 ]; then
    echo "$name" > "$VL_W/failed_stage"
    echo "[vast-launch] stage $k/$n $name: FAILED (exit $rc) at=$end start=$start"
    rm -f "$VL_W/stage.pid"
    exit $rc
  fi
  touch "$M/$name.done"
  echo "[vast-launch] stage $k/$n $name: done at=$end start=$start"
done
rm -f "$VL_W/stage.pid" "$VL_W/current_stage"
