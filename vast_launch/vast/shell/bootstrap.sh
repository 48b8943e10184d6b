#!/bin/bash
# vast-launch bootstrap for launch @@LAUNCH_ID@@. Rendered per launch; holds no secret.
# Vast runs the onstart on every container start, so this is idempotent. Every teardown layer here ends in
# one function, `teardown` (result.json, the bounded final sync to the outputs store, destroy and confirm):
# the trap (any end of this shell) and a watchdog in its own process group (deadline, budget, idle), so
# that a SIGTERM to this shell's group cannot disable both. The Python it runs is package data of
# vast-launch, written below into .vl/ and run by the image's python3 with nothing of the user's.
set -u
L=@@LAUNCH_ID@@ SHA=@@COMMIT@@ REPO=@@REPO@@ ARCHIVE=@@ARCHIVE@@ AUTO=@@AUTO@@ IDLE_S=@@IDLE_S@@ SIG=
STORE=@@STORE@@ FINAL_S=@@FINAL_S@@ DEADLINE=${VL_DEADLINE:-@@DEADLINE@@} WHY=${VL_DEADLINE_WHY:-deadline}
ATTEMPT=${VL_ATTEMPT:-1}
case $DEADLINE.$ATTEMPT in *[!0-9.]*|.*|*.) DEADLINE=@@DEADLINE@@ ATTEMPT=1 ;; esac
case $WHY in deadline|budget) ;; *) WHY=deadline ;; esac
export WANDB_RUN_GROUP=@@GROUP@@ VL_PROFILE=@@PROFILE@@ VL_CONFIG=@@CONFIG@@
W=${DATA_DIRECTORY:-$HOME}/vl-$L BOOT=$$
V=$W/.vl S=$W/.vl/secrets
# Secrets leave the environment first: each goes from .vl/secrets (0600) only to the process that needs it
# (the git token to the fetch, the W&B key to the stages, the store's keys to the sync, the instance key
# to destroy). Only their names reach argv.
SECRETS=(@@SECRET_NAMES@@)
if [ -z "${VL_STASHED:-}" ]; then
  (umask 077; mkdir -p "$S") || exit 1
  for n in "${SECRETS[@]}"; do [ -n "${!n:-}" ] && (umask 077; printf '%s' "${!n}" > "$S/$n"); done
  # shellcheck disable=SC2046  # one `-u NAME` per word, names only
  exec env $(for n in "${SECRETS[@]}" $(compgen -e VL_BOOT_); do printf -- '-u %s ' "$n"; done) VL_STASHED=1 bash "$0"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
mkdir -p "$W/out" && cd "$W" || exit 1
# Where ssh sessions (which may lack DATA_DIRECTORY) find it; noclobber: never written through a planted link.
( set -C; echo "$W" > "/tmp/vl-$L.dir" ) 2>/dev/null
# Log to a file, never through a pipe that a group SIGTERM can kill; a mirror in its own process
# group copies the file to the container's output, which is what Vast's logs API returns.
trap '' PIPE
touch boot.log
exec 3>&1 >>boot.log 2>&1
set -m
tail -c +$(($(stat -c %s boot.log) + 1)) -s 0.2 -F boot.log >&3 2>/dev/null &
set +m
cat > stages.tsv <<'VL_STAGES'
@@STAGES_TSV@@
VL_STAGES
cat > run_stages.sh <<'VL_RUNNER'
@@RUN_STAGES@@
VL_RUNNER
@@HELPERS@@
printf '{"deadline": %s, "attempt": %s}\n' "$DEADLINE" "$ATTEMPT" > "$V/run.json"
export VL_LAUNCH_ID=$L VL_OUT=$W/out VL_W=$W WANDB_DIR=$W/out PYTHONPATH=$W/repo/src:$W/repo
log(){ echo "[vast-launch] $(date -u +%H:%M:%S) $*"; }
py(){ (cd "$V" && exec python3 -E -S -m "vast_launch.$1" "${@:2}"); }
AGENT="" LIB=""
agent_up(){ [ -n "$AGENT" ] && kill -0 "$AGENT" 2>/dev/null; }
tell(){ agent_up && [ -p "$V/agent.fifo" ] && echo "$*" 1<>"$V/agent.fifo"; }
# The agent's end (at most until the hard deadline), and whether its teardown did what it was asked.
agent_wait(){ if [ "$BASHPID" = "$BOOT" ]; then wait "$AGENT"; return; fi
  while kill -0 "$AGENT" 2>/dev/null; do [ "$(date +%s)" -ge "$DEADLINE" ] && return 1; sleep 0.05; done
  [ "$(cat "$V/teardown.rc" 2>/dev/null)" = 0 ]; }
# The last resort when the agent's DELETE failed: the vastai CLI (it exits 0 on HTTP errors, so ask again).
cli_destroy(){ local i; command -v vastai >/dev/null || { log "could not destroy; the watchdog and the reaper remain"; return 1; }
  for i in 1 2 3; do
    log "destroying instance $CONTAINER_ID with the vastai CLI (try $i)"
    VAST_API_KEY=$(cat "$S/CONTAINER_API_KEY" 2>/dev/null) vastai destroy instance "$CONTAINER_ID" -y >/dev/null 2>&1
    py vast.shell.agent gone "$W" && return; sleep $((i * 2))
  done; log "could not destroy; the watchdog and the reaper remain"; return 1; }
# The one teardown ($1: done, deadline, budget or idle; $2: force, to destroy with auto-shutdown off too).
# One layer tears down at a time; the watchdog, finding the other one still syncing, destroys at the hard
# deadline itself, upload or not.
teardown(){
  if ! mkdir "$V/teardown" 2>/dev/null; then [ "${2:-}" = force ] && at_deadline "$@"; return 0; fi
  if agent_up; then tell go "$@"; agent_wait; else
    log "the teardown agent is not running: tearing down in a new process"
    [ -n "$LIB" ] && wait "$LIB"; py vast.shell.agent finish "$W" "$@"; fi && {
    [ "$AUTO" = 1 ] || [ "${2:-}" = force ] || rmdir "$V/teardown"; return 0; }
  { [ "$AUTO" = 1 ] || [ "${2:-}" = force ]; } && cli_destroy
}
at_deadline(){ while [ -d "$V/teardown" ] && [ "$(date +%s)" -lt "$DEADLINE" ]; do sleep 1; done
  [ -d "$V/teardown" ] || { teardown "$@"; return; }
  log "hard deadline: the other teardown is still syncing; destroying now"
  py vast.shell.agent destroy "$W" || cli_destroy; }
# W&B may still be writing after a stage exits: wait for this launch's wandb-core (no pgrep in slim images).
wandb_busy(){ local f a; for f in /proc/[0-9]*/cmdline; do
  mapfile -d '' a 2>/dev/null <"$f"; [[ "${a[*]}" == *wandb-core* ]] || continue
  mapfile -d '' a 2>/dev/null <"${f%cmdline}environ"; [[ " ${a[*]} " == *" VL_LAUNCH_ID=$L "* ]] && return 0
done; return 1; }
wandb_wait(){ for _ in $(seq 1200); do wandb_busy || return; sleep 0.1; done; }
finish(){
  rc=$?; trap '' TERM INT HUP; set +e
  [ "$rc" = 0 ] && touch "$W/done"
  fs=$(cat "$W/failed_stage" 2>/dev/null)
  [ -z "$fs" ] && [ "$rc" != 0 ] && fs=$(cat "$W/current_stage" 2>/dev/null)
  echo "rc=$rc failed_stage=$fs signal=$SIG t=$(date +%s.%N)" > "$W/result"
  log "result rc=$rc failed_stage=$fs at=$(date +%s.%N)${SIG:+ signal=$SIG}"
  tell result
  wandb_wait
  # A container stop or restart sends TERM, then KILL after a grace (Docker: 10 s): wait that out, so a
  # restarted instance resumes; a TERM that is not followed by a KILL still ends in a destroy.
  [ "$SIG" = TERM ] && sleep 12
  teardown "done"
}
gpu_busy(){ local u; command -v nvidia-smi >/dev/null || return 1
  for u in $(nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits 2>/dev/null); do
    [ "${u%%.*}" -ge 5 ] 2>/dev/null && return 0; done; return 1; }
busy(){ kill -0 "$(cat "$W/stage.pid" 2>/dev/null)" 2>/dev/null || gpu_busy \
  || { [ ! -f "$W/result" ] && kill -0 "$BOOT" 2>/dev/null; }; }
hit(){ echo "$1" > "$W/deadline_hit"; log "$2: destroying"; teardown "$1" force; }
# With a store the watchdog starts early enough for the final sync and the destroy to end by the deadline.
FIRE=$DEADLINE; [ -n "$STORE" ] && FIRE=$((DEADLINE - FINAL_S - 5))
watchdog(){
  trap '' TERM INT HUP; local now nap idle_since; idle_since=$(date +%s)
  while :; do
    now=$(date +%s)
    [ "$now" -ge "$FIRE" ] && { hit "$WHY" "$WHY reached"; return; }
    nap=$((FIRE - now))
    if [ "$IDLE_S" -gt 0 ]; then
      busy && idle_since=$now
      [ $((now - idle_since)) -ge "$IDLE_S" ] && { hit idle "idle for $IDLE_S s"; return; }
      nap=$((nap < 15 ? nap : 15)); nap=$((nap < IDLE_S ? nap : IDLE_S))
    fi
    sleep "$nap"
  done
}
# The token reaches git through its environment only: never on argv, never in .git/config.
git_auth(){ local t; t=$(cat "$S/VL_GIT_TOKEN" 2>/dev/null); [ -z "$t" ] && { git "$@"; return; }
  GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=http.extraHeader \
  GIT_CONFIG_VALUE_0="Authorization: Basic $(printf 'x-access-token:%s' "$t" | base64 -w0)" git "$@"; }
# Slim images (the pytorch runtime ones among them) have no git: the commit's archive, else apt-get.
archive(){ [ -n "$ARCHIVE" ] || return 1; log "no git in the image: fetching the commit's archive"
  rm -rf repo.part && VL_GIT_TOKEN=$(cat "$S/VL_GIT_TOKEN" 2>/dev/null) py vast.shell.archive "$ARCHIVE" "$W/repo.part" \
    && mv repo.part repo && echo "$SHA" > repo/.vl-commit; }
apt_git(){ command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] || return 1
  log "no git in the image: installing it with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends git ca-certificates >/dev/null 2>&1; }
fetch_code(){
  [ "$(cat repo/.vl-commit 2>/dev/null)" = "$SHA" ] && return
  command -v git >/dev/null || archive || apt_git || {
    log "no git in the image and it could not be installed (needs root and apt-get; or a GitHub remote or code.archive_url)"
    return 1; }
  [ -f repo/.vl-commit ] && return  # the archive above brought it
  # A container stopped mid-fetch (outbid) starts this again on what it left: its locks, a repo without the commit.
  [ -d repo/.git ] || git init -q repo || return 1
  rm -f repo/.git/*.lock
  git -C repo remote get-url origin >/dev/null 2>&1 || git -C repo remote add origin "$REPO" || return 1
  git -C repo cat-file -e "$SHA^{commit}" 2>/dev/null \
    || git_auth -C repo fetch -q --depth 1 origin "$SHA" || git_auth -C repo fetch -q origin || return 1
  git -C repo checkout -q --detach "$SHA" || { log "commit $SHA not found in $REPO"; return 1; }
}
# obstore for an s3:// store, into .vl/py: nothing of it reaches the image's or the user's environment.
store_lib(){ case $STORE in s3://*) ;; *) return 0 ;; esac; [ -d "$V/py/obstore" ] && return 0
  # into a side folder, moved in whole: an install a stop cut short is not taken for a complete one
  rm -rf "$V/py.part" && python3 -m pip install -q --no-deps --target "$V/py.part" @@OBSTORE_PIN@@ >/dev/null 2>&1 \
    && rm -rf "$V/py" && mv "$V/py.part" "$V/py" && return
  log "could not install @@OBSTORE_PIN@@ for the outputs store (it needs python3 >= 3.11 and pip in the image)"; return 1; }
trap finish EXIT
trap 'SIG=TERM; exit 143' TERM
trap 'SIG=INT; exit 130' INT
trap 'SIG=HUP; exit 129' HUP
if [ "${VL_WATCHDOG:-1}" = 1 ]; then set -m; watchdog & echo $! > watchdog.pid; set +m; fi
[ "${VL_TRAP:-1}" = 1 ] || trap - EXIT
log "launch $L commit $SHA attempt $ATTEMPT deadline $(date -u -d "@$DEADLINE" +%FT%TZ 2>/dev/null || echo "$DEADLINE") ($WHY)"
[ "$AUTO" = 1 ] || log "WARNING: auto-shutdown is off: the instance runs until the deadline or the idle limit"
rm -rf "$V/teardown" "$V/teardown.rc"
store_lib & LIB=$!
[ -f ./done ] && { log "already finished: tearing down"; exit 0; }
fetch_code; fetched=$?
rm -f "$S/VL_GIT_TOKEN"  # fetched or not: nothing after this needs it
[ "$fetched" = 0 ] || exit 1
if ! { cd repo && { set +u; @@SETUP@@; }; }; then log "setup failed"; exit 1; fi
wait "$LIB" || exit 1; LIB=
# The agent: with a store it syncs; without one it only spares the teardown an interpreter's start-up.
# fd 4 keeps the fifo open here, so that a line written before the agent opened it is not lost.
if [ -n "$STORE" ]; then
  [ -f "$V/pulled" ] || { py store.objects pull "$W" "$L" && touch "$V/pulled"; } || { log "could not read the outputs store"; exit 1; }
fi
if [ -n "$STORE" ] || [ "$AUTO" = 1 ]; then
  rm -f "$V/agent.fifo" && mkfifo "$V/agent.fifo" && exec 4<>"$V/agent.fifo" \
    && { set -m; py vast.shell.agent serve "$W" & AGENT=$!; set +m; }
fi
bash "$W/run_stages.sh"
