#!/usr/bin/env bash
# Installs ferry on this host: ferryd + ferryctl, the config, the state dir,
# the systemd unit and the operations guide. Safe to run again: a file whose
# content is already right is left alone, and an existing ferry.conf is never
# overwritten.
#
#   deploy/install.sh [options]
#     --build-dir DIR   where ferryd and ferryctl were built (default: build)
#     --prefix DIR      binaries in DIR/bin, docs in DIR/share/doc/ferry
#                       (default: /usr/local)
#     --config FILE     install FILE as /etc/ferry/ferry.conf if there is none
#                       (e.g. deploy/examples/host1.conf, edited)
#     --root DIR        install under DIR instead of / (staging, packaging)
#     --enable          systemctl enable --now ferryd afterwards
#     --dry-run         say what would change, change nothing
#     -h, --help
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build=$src/build
prefix=/usr/local
config=
root=
enable=0
dry=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case $1 in
        --build-dir) build=${2:?--build-dir needs a directory}; shift 2 ;;
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --config) config=${2:?--config needs a file}; shift 2 ;;
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        --enable) enable=1; shift ;;
        --dry-run) dry=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
case $prefix in /*) ;; *) die "--prefix must be absolute: $prefix" ;; esac
root=${root%/}
bindir=$prefix/bin
docdir=$prefix/share/doc/ferry

for f in "$build/ferryd" "$build/ferryctl" "$build/guest/ferry-guest.elf"; do
    [ -x "$f" ] || die "$f missing: build first (cmake -S . -B build && make -C build) or pass --build-dir"
done
[ -z "$config" ] || [ -r "$config" ] || die "cannot read --config $config"

changed=0
act() {   # act DESCRIPTION COMMAND...: run it, or only say it with --dry-run
    local what=$1; shift
    if [ $dry = 1 ]; then echo "would $what"; else echo "$what"; "$@"; fi
    changed=$((changed + 1))
}

# put MODE SOURCE DEST: install SOURCE as DEST unless DEST already has that content and mode
put() {
    local mode=$1 from=$2 to=$root$3
    if [ -f "$to" ] && cmp -s "$from" "$to" && [ "$(stat -c %a "$to")" = "$mode" ]; then
        echo "unchanged $3"
        return
    fi
    act "install $3" install -D -m "$mode" "$from" "$to"
}

dir() {   # dir MODE PATH
    local mode=$1 path=$root$2
    if [ -d "$path" ] && [ "$(stat -c %a "$path")" = "$mode" ]; then
        echo "unchanged $2/"
        return
    fi
    act "create $2/ (mode $mode)" install -d -m "$mode" "$path"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

put 755 "$build/ferryd" "$bindir/ferryd"
put 755 "$build/ferryctl" "$bindir/ferryctl"
put 644 "$build/guest/ferry-guest.elf" "$prefix/lib/ferry/ferry-guest.elf"
dir 755 /etc/ferry
dir 700 /var/lib/ferry
put 644 "$here/examples/host1.conf" /etc/ferry/ferry.conf.example
if [ -n "$config" ]; then
    if [ -e "$root/etc/ferry/ferry.conf" ]; then
        echo "kept /etc/ferry/ferry.conf (exists; edit it by hand)"
    else
        put 640 "$config" /etc/ferry/ferry.conf
    fi
fi
sed -e "s|@BINDIR@|$bindir|g" -e "s|@DOCDIR@|$docdir|g" "$here/ferryd.service" > "$tmp/ferryd.service"
unit_before=$changed
put 644 "$tmp/ferryd.service" /etc/systemd/system/ferryd.service
[ -r "$src/docs/operations.md" ] && put 644 "$src/docs/operations.md" "$docdir/operations.md"

systemd=0
[ -z "$root" ] && [ -d /run/systemd/system ] && systemd=1
if [ $systemd = 1 ] && [ $changed -gt $unit_before ]; then
    act "reload systemd" systemctl daemon-reload
fi
if [ $enable = 1 ]; then
    if [ $systemd = 1 ]; then
        act "enable and start ferryd" systemctl enable --now ferryd
    else
        echo "not enabling: no running systemd${root:+ (installing under --root)}"
    fi
fi

if [ $dry = 1 ]; then
    echo "dry run: $changed change(s) would be made"
else
    echo "$changed change(s) made"
    if [ ! -e "$root/etc/ferry/ferry.conf" ]; then
        echo "next: write /etc/ferry/ferry.conf (see /etc/ferry/ferry.conf.example and $docdir/operations.md)"
    fi
fi
