#!/usr/bin/env bash
# Download the cp312 manylinux wheels that `make gpu-check` installs on a bare GPU machine (no internet there)
# into .whl/ (git-ignored), one version of each, and print their total size: with the checkout it must stay
# well under the 64 MiB a device run carries.
#   scripts/gpu_wheels.sh [LIST] [DEST]     (default: scripts/gpu-wheels.txt, .whl)
set -euo pipefail
cd "$(dirname "$0")/.."
LIST=${1:-scripts/gpu-wheels.txt}
DEST=${2:-.whl}
PYTHON=${PYTHON:-python3}
PYVER=${PYVER:-3.12}  # another version only for a dry run of `make gpu-check` on this machine
mkdir -p "$DEST"
# pip matches each manylinux tag exactly: name the ones the wheels above are published under
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64
           manylinux2014_x86_64 manylinux1_x86_64 manylinux_2_34_x86_64 manylinux_2_31_x86_64)
args=()
for p in "${PLATFORMS[@]}"; do args+=(--platform "$p"); done
mapfile -t specs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$LIST" | grep -v '^$')
# one version of each: a wheel left over from an older list would stop the install there
for whl in "$DEST"/*.whl; do
    [ -e "$whl" ] || continue
    name=$(basename "$whl" | cut -d- -f1 | tr 'A-Z-' 'a-z_')
    keep=no
    for s in "${specs[@]}"; do
        n=${s%%==*}; v=${s##*==}
        if [ "$(echo "$n" | tr 'A-Z-' 'a-z_')" = "$name" ] && [[ $(basename "$whl") == *-"$v"-* ]]; then keep=yes; fi
    done
    [ $keep = yes ] || { echo "removing $whl (not in $LIST)"; rm -f "$whl"; }
done
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    "${args[@]}" -d "$DEST" "${specs[@]}"
count=$(ls "$DEST"/*.whl | wc -l)
echo "$count wheels for ${#specs[@]} requirements in $DEST: $(du -ch "$DEST"/*.whl | tail -1 | cut -f1)"
[ "$count" -eq "${#specs[@]}" ] || { echo "expected one wheel per requirement in $LIST" >&2; exit 1; }
