#!/usr/bin/env bash
# bench/raft/pause_repro.sh BUILD_DIR [PAUSE_S] [TRIALS]: how long a stall
# ferry's Raft rides out. Three agents on 127.0.0.1 (tests/integration/lib.sh);
# for each of leader / both followers / one follower, TRIALS times: wait until
# whole, SIGSTOP them for PAUSE_S (as a disk or CPU stall would), SIGCONT, and
# see whether the term moved. Prints one line per case; asserts nothing.
#
#   bash bench/raft/pause_repro.sh build 0.15 5
#   pause leader for 0.15 s: the term moved in 5 of 5 trials
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
pause=${2:-0.15}
trials=${3:-5}
export FERRYD=$build/ferryd FERRYCTL=$build/ferryctl
cd "$(dirname "$0")/../.."
source tests/integration/lib.sh

for i in 1 2 3; do make_agent "$i"; done
for i in 1 2 3; do start_agent "$i"; done
whole() {
    local leader
    leader=$(status_field 1 'd["leader"]') && [ -n "$leader" ] &&
        [ "$(status_field 1 'len(d["voters"])')" = 3 ] &&
        [ "$(status_field 2 'd["leader"]')" = "$leader" ] && [ "$(status_field 3 'd["leader"]')" = "$leader" ]
}
pid_of() { eval echo "\$AGENT_PID_$1"; }
wait_for 30 whole || fail "the cluster did not form"
for who in leader followers one-follower; do
    moved=0
    for _ in $(seq "$trials"); do
        wait_for 30 whole || fail "the cluster is not whole"
        sleep 1
        leader=$(status_field 1 'd["leader"]'); leader=${leader#h}
        f1=$((leader % 3 + 1)); f2=$((f1 % 3 + 1))
        before=$(status_field "$f1" 'd["term"]')
        case $who in
            leader) targets="$(pid_of "$leader")" ;;
            followers) targets="$(pid_of "$f1") $(pid_of "$f2")" ;;
            one-follower) targets="$(pid_of "$f1")" ;;
        esac
        kill -STOP $targets; sleep "$pause"; kill -CONT $targets
        sleep 1.5
        after=$(status_field "$f2" 'd["term"]')
        [ "$after" = "$before" ] || moved=$((moved + 1))
    done
    echo "pause $who for $pause s: the term moved in $moved of $trials trials"
done
