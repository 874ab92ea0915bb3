#!/usr/bin/env bash
# Installs NVIDIA's ptxas (from the `nvidia-cuda-nvcc` wheel on PyPI) into the git-ignored
# folder .ptxas/ at the repository root and prints the path of the ptxas binary.
# Used by CI (and by developers) so that the PTX of every generated kernel can be assembled
# for sm_80 and sm_90 without a GPU, a driver or a CUDA toolkit.
# Usage: scripts/install-ptxas.sh [PYTHON]   (default: python3; needs pip)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.ptxas"
py="${1:-python3}"
version="13.5.37"
find_ptxas() { find "$dest" -path '*/bin/ptxas' -type f 2>/dev/null | sort | head -n 1; }
existing="$(find_ptxas || true)"
if [ -n "$existing" ] && "$existing" --version >/dev/null 2>&1; then
    echo "$existing"
    exit 0
fi
mkdir -p "$dest/wheel"
# Self-ignoring folder: git never sees what is installed here.
printf "*\n" > "$dest/.gitignore"
"$py" -m pip download --quiet --no-deps --only-binary=:all: \
    "nvidia-cuda-nvcc==$version" -d "$dest/wheel" >&2
whl="$(ls "$dest"/wheel/nvidia_cuda_nvcc-*.whl | head -n 1)"
# A wheel is a zip file; unpack only the bin/ folder (ptxas and friends).
"$py" - "$whl" "$dest/pkg" <<'PY'
import sys, zipfile, os, stat
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if "/bin/" in n and not n.endswith("/"):
            z.extract(n, out)
            p = os.path.join(out, n)
            os.chmod(p, os.stat(p).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
PY
rm -rf "$dest/wheel"
ptxas="$(find_ptxas)"
if [ -z "$ptxas" ]; then
    echo "install-ptxas: no bin/ptxas in $whl" >&2
    exit 1
fi
"$ptxas" --version >&2
echo "$ptxas"
