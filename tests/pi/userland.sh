#!/usr/bin/env bash
# Build a Debian 12 (bookworm) userland for a foreign architecture WITHOUT booting it and without
# touching the host's dpkg/apt state: a private apt configuration (own sources, state, cache,
# status file) resolves and downloads the dependency closure with `apt-get download`, and
# `dpkg -x` unpacks each .deb into a rootfs directory. No maintainer scripts run (nothing needs
# them to run Python: no alternatives, no ldconfig trigger — ld.so's built-in multiarch paths do).
#
# Usage: tests/pi/userland.sh ARCH PACKAGE...       (ARCH: arm64 | armhf)
# Prints the rootfs path on stdout (the last line). Cached under
# $EDGELSTM_PI_CACHE (default ~/.cache/edgelstm/pi-userland)/<arch>/rootfs-<key>, key = hash of the
# arch, the requested package list and this script; EDGELSTM_PI_REFRESH=1 rebuilds.
# EDGELSTM_DEBIAN_MIRROR overrides the mirror (default: the Debian mirror in the host's apt
# sources, else deb.debian.org).
set -euo pipefail

ARCH="${1:?usage: userland.sh ARCH PACKAGE...}"
shift
(($# > 0)) || { echo "userland.sh: no packages given" >&2; exit 2; }
case "$ARCH" in arm64 | armhf) ;; *) echo "userland.sh: unknown arch '$ARCH'" >&2; exit 2 ;; esac

CACHE="${EDGELSTM_PI_CACHE:-$HOME/.cache/edgelstm/pi-userland}"
SELF_SHA="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-64)"
KEY="$(printf '%s\n' "$ARCH" "$SELF_SHA" "$@" | sha256sum | cut -c1-16)"
BASE="$CACHE/$ARCH"
ROOTFS="$BASE/rootfs-$KEY"
log() { printf '[userland %s] %s\n' "$ARCH" "$*" >&2; }

if [[ -f "$ROOTFS/.edgelstm-complete" && "${EDGELSTM_PI_REFRESH:-0}" != 1 ]]; then
  log "cached: $ROOTFS ($(wc -l <"$ROOTFS/.edgelstm-packages") packages)"
  echo "$ROOTFS"
  exit 0
fi

# The host's Debian mirror: the first URI serving a plain Debian archive (deb822 .sources or
# one-line sources.list), so CI uses whatever mirror the machine is configured for.
host_mirror() {
  local f line
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    while IFS= read -r line; do
      case "$line" in
        URIs:*) line="${line#URIs:}" ;;
        deb\ *) line="$(awk '{for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) {print $i; exit}}' <<<"$line")" ;;
        *) continue ;;
      esac
      for u in $line; do
        [[ "$u" =~ /debian/?$ ]] && { echo "${u%/}"; return 0; }
      done
    done <"$f"
  done
  echo "http://deb.debian.org/debian"
}
MIRROR="${EDGELSTM_DEBIAN_MIRROR:-$(host_mirror)}"
SECURITY="${MIRROR%/debian}/debian-security"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -f "$KEYRING" ]] || { echo "userland.sh: $KEYRING missing (apt-get install debian-archive-keyring)" >&2; exit 1; }

APTDIR="$BASE/apt"
mkdir -p "$APTDIR"/{etc/apt.conf.d,etc/preferences.d,etc/sources.list.d,state/lists/partial,cache/archives/partial,debs}
: >"$APTDIR/state/status"
cat >"$APTDIR/etc/sources.list" <<SRC
deb [arch=$ARCH signed-by=$KEYRING] $MIRROR bookworm main
deb [arch=$ARCH signed-by=$KEYRING] $MIRROR bookworm-updates main
deb [arch=$ARCH signed-by=$KEYRING] $SECURITY bookworm-security main
SRC
# APT_CONFIG replaces /etc/apt/apt.conf, and Dir::Etc::Parts points at an empty directory, so no
# host hook (docker-clean, update notifiers) runs and no host state is read or written.
cat >"$APTDIR/apt.conf" <<CONF
Dir "/";
Dir::State "$APTDIR/state";
Dir::State::status "$APTDIR/state/status";
Dir::Cache "$APTDIR/cache";
Dir::Etc "$APTDIR/etc";
Dir::Etc::SourceList "$APTDIR/etc/sources.list";
Dir::Etc::SourceParts "$APTDIR/etc/sources.list.d";
Dir::Etc::Parts "$APTDIR/etc/apt.conf.d";
Dir::Etc::Preferences "$APTDIR/etc/preferences";
Dir::Etc::PreferencesParts "$APTDIR/etc/preferences.d";
Dir::Log "$APTDIR/log";
APT::Architecture "$ARCH";
APT::Architectures { "$ARCH"; };
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Acquire::Check-Valid-Until "false";
Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";
Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";
Debug::NoLocking "true";
CONF
export APT_CONFIG="$APTDIR/apt.conf"

log "apt-get update ($MIRROR, bookworm{,-updates,-security} main, $ARCH)"
apt-get -q update >"$APTDIR/update.log" 2>&1 || { tail -n 20 "$APTDIR/update.log" >&2; exit 1; }

# Resolve the closure with apt's own resolver against an EMPTY status file (nothing installed),
# then download exactly those versions.
sim="$(apt-get -s -q install "$@" 2>&1)" || { echo "$sim" >&2; exit 1; }
mapfile -t pkgs < <(awk '$1 == "Inst" {v = $3; gsub(/[()]/, "", v); print $2 "=" v}' <<<"$sim")
((${#pkgs[@]} > 0)) || { echo "$sim" >&2; echo "userland.sh: nothing resolved" >&2; exit 1; }
log "resolved ${#pkgs[@]} packages; downloading the missing ones"
cd "$APTDIR/debs"
# The downloaded .deb of NAME VERSION (apt writes an epoch's ':' as %3a), or nothing. A glob into
# an array: no `| head` pipeline (an early-exiting reader under pipefail is a SIGPIPE race).
deb_file() {
  local files=("${1}_${2//:/%3a}_"*.deb)
  [[ -e "${files[0]}" ]] && printf '%s\n' "${files[0]}"
}
missing=()
for p in "${pkgs[@]}"; do
  name="${p%%=*}" ver="${p#*=}"
  [[ -n "$(deb_file "$name" "$ver")" ]] || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  apt-get -q download "${missing[@]}" >"$APTDIR/download.log" 2>&1 \
    || { tail -n 20 "$APTDIR/download.log" >&2; exit 1; }
fi

log "unpacking into $ROOTFS"
TMP="$ROOTFS.tmp.$$"
rm -rf "$TMP"
mkdir -p "$TMP"
trap 'rm -rf "$TMP" "$TMP.ctl"' EXIT
for p in "${pkgs[@]}"; do
  name="${p%%=*}" ver="${p#*=}"
  deb="$(deb_file "$name" "$ver")" || { echo "userland.sh: no .deb downloaded for $p" >&2; exit 1; }
  dpkg -x "$deb" "$TMP"
  printf '%s\n' "$p" >>"$TMP/.edgelstm-packages"
done
# Maintainer scripts do not run, but the alternatives some libraries rely on must exist (Debian's
# NumPy loads libblas.so.3/liblapack.so.3 through them): each postinst's literal
# `update-alternatives --install LINK NAME PATH PRIORITY` becomes a relative symlink (relative, so
# it resolves inside the rootfs under `qemu -L`); the highest priority per NAME wins.
declare -A alt_link alt_path alt_prio
for p in "${pkgs[@]}"; do
  name="${p%%=*}" ver="${p#*=}"
  deb="$(deb_file "$name" "$ver")" || { echo "userland.sh: no .deb downloaded for $p" >&2; exit 1; }
  ctl="$TMP.ctl"
  rm -rf "$ctl" && mkdir -p "$ctl"
  dpkg-deb -e "$deb" "$ctl"
  [[ -f "$ctl/postinst" ]] || continue
  # Join continuation lines, then read the four words after each --install.
  joined="$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$ctl/postinst")"
  while read -r link aname apath prio _; do
    [[ "$link$aname$apath$prio" == *'$'* || ! "$prio" =~ ^[0-9]+$ ]] && continue
    if [[ -z "${alt_prio[$aname]:-}" || "$prio" -gt "${alt_prio[$aname]}" ]]; then
      alt_link[$aname]="$link" alt_path[$aname]="$apath" alt_prio[$aname]="$prio"
    fi
  done < <(grep -o -E 'update-alternatives +--install +[^;&|]*' <<<"$joined" | sed -E 's/update-alternatives +--install +//')
done
rm -rf "$TMP.ctl"
for aname in "${!alt_link[@]}"; do
  [[ -e "$TMP${alt_path[$aname]}" ]] || continue
  mkdir -p "$(dirname "$TMP${alt_link[$aname]}")"
  ln -sfr "$TMP${alt_path[$aname]}" "$TMP${alt_link[$aname]}"
  printf '%s -> %s\n' "${alt_link[$aname]}" "${alt_path[$aname]}" >>"$TMP/.edgelstm-alternatives"
done
# An empty ld.so.cache: ld.so then uses its built-in multiarch search paths and never falls back
# to the host's x86 cache (with `qemu -L`, a file missing from the rootfs is looked up on the host).
mkdir -p "$TMP/etc" && : >"$TMP/etc/ld.so.cache"
touch "$TMP/.edgelstm-complete"
rm -rf "$ROOTFS"
mv "$TMP" "$ROOTFS"
trap - EXIT
# Older rootfs builds of this arch (another package list or script version) are stale.
for old in "$BASE"/rootfs-*; do
  [[ "$old" == "$ROOTFS" || ! -d "$old" ]] || rm -rf "$old"
done
log "done: $ROOTFS ($(du -sh "$ROOTFS" | cut -f1))"
echo "$ROOTFS"
