#!/bin/bash
# vast-launch onstart for launch @@LAUNCH_ID@@. Rendered per launch; holds no secret.
# Vast runs it on every container start, so it is idempotent.
L=@@LAUNCH_ID@@ SHA=@@COMMIT@@ REPO=@@REPO@@ DEADLINE=@@DEADLINE@@ AUTO=@@AUTO@@
export WANDB_RUN_GROUP=@@GROUP@@ VL_PROFILE=@@PROFILE@@ VL_CONFIG=@@CONFIG@@
W=${DATA_DIRECTORY:-$HOME}/vl-$L; mkdir -p "$W/out"; cd "$W" || exit 1; echo "$W" > "/tmp/vl-$L.dir"
exec > >(tee -a "$W/boot.log") 2>&1
cat > stages.tsv <<'VL_STAGES'
@@STAGES_TSV@@
VL_STAGES
export VL_LAUNCH_ID=$L VL_OUT=$W/out VL_W=$W WANDB_DIR=$W/out PYTHONPATH=$W/repo/src:$W/repo
log(){ echo "[vast-launch] $(date -u +%H:%M:%S) $*"; }
U=${VAST_URL:-https://console.vast.ai}
api(){ python3 - "$1" "$U/api/v0/instances/$CONTAINER_ID/" <<'PY'
import json,os,sys,urllib.request as u
r=u.Request(sys.argv[2]+"?owner=me",method=sys.argv[1],data=b"{}" if sys.argv[1]=="DELETE" else None,headers={"Authorization":"Bearer "+os.environ["CONTAINER_API_KEY"],"Content-Type":"application/json"})
try:b=json.load(u.urlopen(r,timeout=30))
except Exception as e:b={"code":getattr(e,"code",0)}
sys.exit(0 if b.get("instances",1) is None or b.get("code")==404 else 1)
PY
}
destroy(){
  [ "$AUTO" = 1 ] || [ "$1" = force ] || { log "auto-shutdown off: instance left running"; return; }
  for i in 1 2 3 4 5 6 7 8; do
    log "destroying instance $CONTAINER_ID (try $i)"
    vastai destroy instance "$CONTAINER_ID" -y --api-key "$CONTAINER_API_KEY" >/dev/null 2>&1
    api GET && { log "instance gone"; return; }
    api DELETE; api GET && { log "instance gone (HTTP)"; return; }
    sleep $((i < 5 ? i : 5)).$((RANDOM % 10))
  done; log "could not destroy; the watchdog and the reaper remain"
}
wandb_wait(){ for _ in $(seq 240); do pgrep -g "$(ps -o pgid= $$ | tr -d ' ')" -f wandb-core >/dev/null 2>&1 || return; sleep 0.5; done; }
finish(){
  rc=$?; trap - EXIT TERM INT HUP; set +e
  [ "$rc" = 0 ] && touch "$W/done"
  log "result rc=$rc failed_stage=$(cat "$W/failed_stage" 2>/dev/null) at=$(date +%s.%N)"
  echo "rc=$rc failed_stage=$(cat "$W/failed_stage" 2>/dev/null) t=$(date +%s.%N)" > "$W/result"
  wandb_wait; cp -f "$W/boot.log" "$W/out/" 2>/dev/null; destroy
}
trap finish EXIT
trap 'exit 143' TERM INT HUP
if [ "${VL_WATCHDOG:-1}" = 1 ] && ! kill -0 "$(cat "$W/watchdog.pid" 2>/dev/null)" 2>/dev/null; then
  (trap '' TERM INT HUP; while [ "$(date +%s)" -lt "$DEADLINE" ]; do sleep 1; done
   log "deadline reached: destroying"; echo deadline > "$W/deadline_hit"; destroy force) &
  echo $! > "$W/watchdog.pid"
fi
[ "${VL_TRAP:-1}" = 1 ] || trap - EXIT
log "launch $L commit $SHA deadline $(date -u -d "@$DEADLINE" +%FT%TZ 2>/dev/null || echo "$DEADLINE")"
[ -f "$W/done" ] && { log "already finished: tearing down"; exit 0; }
if [ ! -d repo/.git ]; then
  git init -q repo && git -C repo remote add origin "$REPO" || exit 1
  [ -n "$VL_GIT_TOKEN" ] && git -C repo config http.extraHeader "Authorization: Basic $(printf 'x-access-token:%s' "$VL_GIT_TOKEN" | base64 -w0)"
  git -C repo fetch -q --depth 1 origin "$SHA" || git -C repo fetch -q origin || exit 1
fi
git -C repo checkout -q --detach "$SHA" || { log "commit $SHA not found in $REPO"; exit 1; }
cd repo && { @@SETUP@@; } || { log "setup failed"; exit 1; }
bash onstart/run_stages.sh
