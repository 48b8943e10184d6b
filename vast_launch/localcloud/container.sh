#!/bin/bash
# An instance's container on this machine, as far as Vast's isolation matters to the launcher's safety:
# run by the local cloud under `unshare --mount --pid --fork --mount-proc`, it shows the instance its own
# files and processes only. The cloud's root shows only this instance's folder (no sibling's files or
# key), each path given to hide is covered (the account key file, this machine's credentials), and /proc
# lists this container's processes only (no other process's environment).
#
#   container.sh ROOT OWN_DIR KEEP [HIDE...] -- COMMAND...
#
# The instance's environment comes on stdin (NAME=value, NUL-separated) and goes to COMMAND alone: this
# long-lived init's own environment (/proc/PID/environ) holds none of the instance's secrets.
# KEEP=1 (the ssh run types): this script stays as the container's init after COMMAND (the onstart) ends,
# as Vast's does, so the processes it started live on until the instance is stopped or destroyed, and
# orphans are reaped. KEEP=0 (the args run type): COMMAND is the container's main process.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin  # this machine's, not the image's
root=$1 own=$2 keep=$3; shift 3
hide=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do hide+=("$1"); shift; done
shift
fail(){ echo "local cloud: cannot isolate the container: $*" >&2; exit 125; }
held=$(mktemp -d "${TMPDIR:-/tmp}/.vl-container-XXXXXX") || fail "mktemp"
mount --bind "$own" "$held" || fail "bind $own"
mount -t tmpfs -o mode=0700,size=1m vl-cloud-root "$root" || fail "tmpfs over $root"
mkdir -p "$own" || fail "mkdir $own"
mount --move "$held" "$own" || fail "move $own back"
rmdir "$held" 2>/dev/null
for path in "${hide[@]}"; do
  if [ -d "$path" ]; then mount -t tmpfs -o mode=0700,size=1m vl-hidden "$path" || fail "hide $path"
  elif [ -e "$path" ]; then mount --bind /dev/null "$path" || fail "hide $path"; fi
done
cd "$own" || fail "cd $own"
while IFS= read -r -d '' kv; do export "${kv?}"; done
exec </dev/null
[ "$keep" = 1 ] || exec "$@"
# In the foreground, so the onstart starts with the signals' defaults and shares this process group (a
# stop's TERM to the group reaches it). As the namespace's init this shell gets no signal it has no trap
# for from outside but SIGKILL, so the stop's TERM does not end it; it reaps orphans as they end.
"$@"
while :; do wait; sleep 1; done
