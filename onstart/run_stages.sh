#!/bin/bash
# Runs the launch's stages in order inside the cloned repo. A stage marker in $VL_W/markers
# means "finished": after a container restart, finished stages are skipped.
# Stage commands come from $VL_W/stages.tsv (name<TAB>command), written by the bootstrap.
set -o pipefail
M=$VL_W/markers; mkdir -p "$M"
n=$(grep -c . "$VL_W/stages.tsv"); k=0
while IFS=$'\t' read -r name cmd <&3; do
  k=$((k + 1))
  if [ -f "$M/$name.done" ]; then echo "[vast-launch] stage $k/$n $name: already done, skipped"; continue; fi
  start=$(date +%s.%N)
  echo "[vast-launch] stage $k/$n $name: start at=$start"
  bash -c "$cmd"; rc=$?
  end=$(date +%s.%N)
  echo "$name $start $end $rc" >> "$VL_W/stage_times"
  if [ $rc -ne 0 ]; then
    echo "$name" > "$VL_W/failed_stage"
    echo "[vast-launch] stage $k/$n $name: FAILED (exit $rc) at=$end start=$start"
    exit $rc
  fi
  touch "$M/$name.done"
  echo "[vast-launch] stage $k/$n $name: done at=$end start=$start"
done 3< "$VL_W/stages.tsv"
