#!/bin/bash
# vast-launch bootstrap for launch @@LAUNCH_ID@@. Rendered per launch; holds no secret.
# Vast runs the onstart on every container start, so this is idempotent. Two teardown layers live
# here: the trap (any end of this shell) and a watchdog in its own process group (deadline, budget,
# idle), so that a SIGTERM to this shell's group cannot disable both.
set -u
L=@@LAUNCH_ID@@ SHA=@@COMMIT@@ REPO=@@REPO@@ ARCHIVE=@@ARCHIVE@@ AUTO=@@AUTO@@ IDLE_S=@@IDLE_S@@ SIG=
DEADLINE=${VL_DEADLINE:-@@DEADLINE@@} WHY=${VL_DEADLINE_WHY:-deadline}
export WANDB_RUN_GROUP=@@GROUP@@ VL_PROFILE=@@PROFILE@@ VL_CONFIG=@@CONFIG@@
W=${DATA_DIRECTORY:-$HOME}/vl-$L BOOT=$$
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
export VL_LAUNCH_ID=$L VL_OUT=$W/out VL_W=$W WANDB_DIR=$W/out PYTHONPATH=$W/repo/src:$W/repo
log(){ echo "[vast-launch] $(date -u +%H:%M:%S) $*"; }
U=${VAST_URL:-https://console.vast.ai}
# DELETE (or only GET) this instance with the stdlib (-S: no site-packages, no CLI start-up); 0: gone.
# FINISH: first wait (at most VL_ACK_WAIT s) until a following launcher labeled it "... result-seen".
# With a fifo ($2) it is started before the stages and blocks on it, so that the trap's teardown does
# not pay an interpreter's start-up (a second or more on a busy host): "result" starts the wait for the
# label, "go" (W&B flushed) the DELETE.
gone(){ python3 -S - "$1" "$U/api/v0/instances/$CONTAINER_ID/?owner=me" "${2:-}" <<'PY'
import json,os,sys,time,urllib.request as u
h={"Authorization":"Bearer "+os.environ["CONTAINER_API_KEY"],"Content-Type":"application/json"}
m,url,fifo=sys.argv[1:4]
def call(m):
    try:return json.load(u.urlopen(u.Request(url,method=m,data=b"{}" if m=="DELETE" else None,headers=h),timeout=30))
    except Exception as e:return {"code":getattr(e,"code",0)}
f=open(fifo) if fifo else None
if f and f.readline()!="result\n":sys.exit(1)
if m=="FINISH":
    end=time.time()+float(os.environ.get("VL_ACK_WAIT") or 0)
    while time.time()<end and not str((call("GET").get("instances") or {}).get("label","")).endswith(" result-seen"):time.sleep(0.05)
if f and f.readline()!="go\n":sys.exit(1)
if m!="GET" and call("DELETE").get("code",0) not in (0,404):sys.exit(1)
for _ in range(12):
    b=call("GET")
    if b.get("instances",1) is None or b.get("code") in (401,403,404):sys.exit(0)
    time.sleep(0.25)
sys.exit(1)
PY
}
destroy(){
  [ "$AUTO" = 1 ] || [ "${1:-}" = force ] || { log "auto-shutdown off: instance left running until the deadline"; return; }
  for i in 1 2 3 4 5 6 7 8; do
    log "destroying instance $CONTAINER_ID (try $i)"
    gone DELETE && return
    command -v vastai >/dev/null && VAST_API_KEY=$CONTAINER_API_KEY vastai destroy instance "$CONTAINER_ID" -y \
      >/dev/null 2>&1 && gone GET && return
    sleep "0.$((RANDOM % 5 + 2))"; [ "$i" -gt 3 ] && sleep $((i < 6 ? i : 6))
  done; log "could not destroy; the watchdog and the reaper remain"
}
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
  [ -n "${FIN:-}" ] && exec 4<>"$W/fin.fifo" && echo result >&4
  wandb_wait; cp -f "$W/boot.log" "$W/out/" 2>/dev/null
  # A container stop or restart sends TERM, then KILL after a grace (Docker: 10 s): wait that out, so a
  # restarted instance resumes; a TERM that is not followed by a KILL still ends in a destroy.
  [ "$SIG" = TERM ] && sleep 12
  [ -n "${FIN:-}" ] && log "destroying instance $CONTAINER_ID" && echo go >&4 && wait "$FIN" && return
  destroy
}
gpu_busy(){ local u; command -v nvidia-smi >/dev/null || return 1
  for u in $(nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits 2>/dev/null); do
    [ "${u%%.*}" -ge 5 ] 2>/dev/null && return 0; done; return 1; }
busy(){ kill -0 "$(cat "$W/stage.pid" 2>/dev/null)" 2>/dev/null || gpu_busy \
  || { [ ! -f "$W/result" ] && kill -0 "$BOOT" 2>/dev/null; }; }
hit(){ echo "$1" > "$W/deadline_hit"; log "$2: destroying"; gone FINISH || destroy force; }
watchdog(){
  trap '' TERM INT HUP; local now nap idle_since; idle_since=$(date +%s)
  while :; do
    now=$(date +%s)
    [ "$now" -ge "$DEADLINE" ] && { hit "$WHY" "$WHY reached"; return; }
    nap=$((DEADLINE - now))
    if [ "$IDLE_S" -gt 0 ]; then
      busy && idle_since=$now
      [ $((now - idle_since)) -ge "$IDLE_S" ] && { hit idle "idle for $IDLE_S s"; return; }
      nap=$((nap < 15 ? nap : 15)); nap=$((nap < IDLE_S ? nap : IDLE_S))
    fi
    sleep "$nap"
  done
}
# The token reaches git through its environment only: never on argv, never in .git/config.
git_auth(){ [ -z "${VL_GIT_TOKEN:-}" ] && { git "$@"; return; }
  GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=http.extraHeader \
  GIT_CONFIG_VALUE_0="Authorization: Basic $(printf 'x-access-token:%s' "$VL_GIT_TOKEN" | base64 -w0)" git "$@"; }
# Slim images (the pytorch runtime ones among them) have no git: the commit's archive, else apt-get.
archive(){ [ -n "$ARCHIVE" ] || return 1; log "no git in the image: fetching the commit's archive"
  rm -rf repo.part && python3 -S - "$ARCHIVE" repo.part <<'PY' && mv repo.part repo && echo "$SHA" > repo/.vl-commit
import io,os,sys,tarfile,urllib.request as u
url,dest=sys.argv[1:3]
t=os.environ.get("VL_GIT_TOKEN")
class NoAuthOnRedirect(u.HTTPRedirectHandler):
    def redirect_request(self,*a):
        r=super().redirect_request(*a)
        if r is not None:r.remove_header("Authorization")
        return r
req=u.Request(url,headers={"Authorization":"Bearer "+t} if t else {})
tf=tarfile.open(fileobj=io.BytesIO(u.build_opener(NoAuthOnRedirect).open(req,timeout=300).read()))
ms=tf.getmembers();tops={m.name.split("/")[0] for m in ms}
if len(tops)==1 and any("/" in m.name for m in ms):
    ms=[m for m in ms if "/" in m.name]
    for m in ms:m.name=m.name.split("/",1)[1]
for m in ms:
    if m.name.startswith("/") or ".." in m.name.split("/") or not (m.isfile() or m.isdir() or m.issym()):sys.exit("unsafe archive member "+m.name)
tf.extractall(dest,members=ms,**({"filter":"data"} if hasattr(tarfile,"data_filter") else {}))
PY
}
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
  if [ ! -d repo/.git ]; then
    git init -q repo && git -C repo remote add origin "$REPO" || return 1
    git_auth -C repo fetch -q --depth 1 origin "$SHA" || git_auth -C repo fetch -q origin || return 1
  fi
  git -C repo checkout -q --detach "$SHA" || { log "commit $SHA not found in $REPO"; return 1; }
}
trap finish EXIT
trap 'SIG=TERM; exit 143' TERM
trap 'SIG=INT; exit 130' INT
trap 'SIG=HUP; exit 129' HUP
if [ "${VL_WATCHDOG:-1}" = 1 ]; then set -m; watchdog & echo $! > watchdog.pid; set +m; fi
FIN=; [ "$AUTO" = 1 ] && rm -f fin.fifo && mkfifo fin.fifo && { gone FINISH "$W/fin.fifo" & FIN=$!; }
[ "${VL_TRAP:-1}" = 1 ] || trap - EXIT
log "launch $L commit $SHA deadline $(date -u -d "@$DEADLINE" +%FT%TZ 2>/dev/null || echo "$DEADLINE") ($WHY)"
[ "$AUTO" = 1 ] || log "WARNING: auto-shutdown is off: the instance runs until the deadline or the idle limit"
[ -f ./done ] && { log "already finished: tearing down"; exit 0; }
fetch_code || exit 1
if ! { cd repo && { set +u; @@SETUP@@; }; }; then log "setup failed"; exit 1; fi
bash "$W/run_stages.sh"
