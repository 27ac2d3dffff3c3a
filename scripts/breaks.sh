#!/usr/bin/env bash
# breaks.sh: shows that a check can fail. Applies one deliberate break from
# scripts/breaks/NAME.patch to a throw-away copy of the tree (a git worktree,
# never this checkout), runs the check that must catch it, and reports
# whether it did. Main never carries a break.
#
#   scripts/breaks.sh NAME              # the break against the checks of HEAD
#   scripts/breaks.sh NAME --at REV     # the same break against the checks of REV
#                                       # (e.g. the commit before a check was
#                                       # strengthened: it should MISS the break)
#   scripts/breaks.sh --list
#
# Exit status: 0 when the check caught the break (it failed), 1 when it
# missed it (it passed), 2 on a setup error. The check's output is kept in
# /var/tmp/cartd-breaks/NAME[-REV].log; its last lines are printed.
#
# Builds into ${BREAKS_TARGET_DIR:-/var/tmp/cartd-target-breaks} (seeded
# from /var/tmp/cartd-target when empty), so the broken binaries never land
# in the build directory the test command uses.
. "$(dirname "$0")/lib.sh"
lib_init breaks.sh

# NAME -> the check that must catch it (run from the worktree's root).
declare -A CHECK=(
  [planner-always-falls-back]="cargo test -p cartd-adapters --test postgres_batch planned_batches_answer_and_write_exactly_what_the_reference_loop_does"
  [planner-ignores-stock]="cargo test -p cartd-adapters --test postgres_batch three_instances_batching_holds_on_shared_items_neither_deadlock_nor_oversell"
  [sessions-vanish-early]="scripts/loadtest.sh --users 200 --increase-rate 100 --run-time 20s --scenarios shopper,browser,tutorial,flashsale --think off --ttl 5 --sweep-ms 500"
  [holds-never-recover]="scripts/chaos.sh --short"
)
declare -A WHAT=(
  [planner-always-falls-back]="the planner hands every batch to the reference loop (issue 16, item 4)"
  [planner-ignores-stock]="the planner grants holds past the stock (issue 16, item 5)"
  [sessions-vanish-early]="Redis drops sessions 2 s before their stated deadline (issue 16, item 6)"
  [holds-never-recover]="after one failed batch every hold is refused for good (issue 16, item 1)"
)

if [ "${1:-}" = --list ] || [ $# -eq 0 ]; then
  for n in "${!CHECK[@]}"; do printf '%-28s %s\n    check: %s\n' "$n" "${WHAT[$n]}" "${CHECK[$n]}"; done
  exit 0
fi
NAME=$1
shift
AT=HEAD
while [ $# -gt 0 ]; do
  case "$1" in
    --at) AT=$2; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
PATCH="$ROOT/scripts/breaks/$NAME.patch"
if [ ! -f "$PATCH" ] || [ -z "${CHECK[$NAME]:-}" ]; then die "no break named $NAME (see --list)"; fi

# Not the shared build directory (lib.sh's default): this one holds broken builds.
shared_target=$CARGO_TARGET_DIR
export CARGO_TARGET_DIR="${BREAKS_TARGET_DIR:-/var/tmp/cartd-target-breaks}"
if [ ! -d "$CARGO_TARGET_DIR" ] && [ -d "$shared_target" ]; then
  log "seeding $CARGO_TARGET_DIR from $shared_target"
  cp -a "$shared_target" "$CARGO_TARGET_DIR"
fi
OUT=/var/tmp/cartd-breaks
mkdir -p "$OUT"
REV=$(git -C "$ROOT" rev-parse --short "$AT")
WT="$OUT/tree-$NAME-$REV"
LOG="$OUT/$NAME$([ "$AT" = HEAD ] || echo "-$REV").log"
remove_tree() { git -C "$ROOT" worktree remove --force "$WT" >/dev/null 2>&1 || rm -rf "$WT"; }
on_exit remove_tree
remove_tree
git -C "$ROOT" worktree add --detach "$WT" "$REV" >/dev/null 2>&1 || die "cannot check out $REV"
git -C "$WT" apply "$PATCH" 2>/dev/null || git -C "$WT" apply -3 "$PATCH" || die "$NAME.patch does not apply to $REV"
log "$NAME: ${WHAT[$NAME]}"
log "applied to $REV; running: ${CHECK[$NAME]}"
set +e
(cd "$WT" && RUST_BACKTRACE=0 bash -c "${CHECK[$NAME]}") >"$LOG" 2>&1
rc=$?
set -e
grep -E "panicked at|^test result|FAIL|RESULT|^loadtest |^cartd-loadtest: |assertion|only [0-9]+ of|left:|right:" "$LOG" | tail -n 12 || true
if [ "$rc" -ne 0 ]; then
  echo "breaks.sh: CAUGHT: the check failed on the broken $REV (exit $rc); log $LOG"
  exit 0
fi
echo "breaks.sh: MISSED: the check passed on the broken $REV; log $LOG"
exit 1
