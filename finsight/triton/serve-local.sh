#!/usr/bin/env bash
# Serve this Triton model repository without a container, with the tritonserver bundled in the
# PyPI package nvidia-pytriton (Linux x86_64, CPU; that bundle has no onnxruntime backend, so the
# repository is built with --classifier-backend python). Written by `finsight triton build`.
#
#   TRITON_ENV=../triton-env ./serve-local.sh [tritonserver options: --http-port=8000 ...]
#
# TRITON_ENV is a venv with requirements.txt and nvidia-pytriton (README.md says how). The
# bundle needs three things set up (finsight/triton/server.py does the same for `triton check`):
# the python backend's stub for this Python next to the backend, libpython and the bundle's own
# libs on LD_LIBRARY_PATH (without the latter the stub hangs the server), and the venv first on
# PATH: the stub takes its Python (numpy<2, tokenizers, onnxruntime) from there.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
env="$(cd "${TRITON_ENV:?set TRITON_ENV to the server venv (README.md)}" && pwd)"
py="$env/bin/python"
site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
version="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
libdir="$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')"
bundle="$site/pytriton/tritonserver"
if [ ! -x "$bundle/bin/tritonserver" ]; then
    echo "serve-local.sh: no tritonserver in $env (pip install --no-deps nvidia-pytriton)" >&2
    exit 1
fi
# Once per venv: the bundle's backends with the stub for this Python (the bundle has one per
# version), made aside and renamed so that two servers starting at once do not see half of it.
backends="$env/finsight-backends-$version"
if [ ! -x "$backends/python/triton_python_backend_stub" ]; then
    staging="$(mktemp -d "$env/.backends.XXXXXX")"
    cp -r "$bundle/backends/." "$staging/"
    cp "$bundle/python_backend_stubs/$version/triton_python_backend_stub" "$staging/python/"
    mv -T "$staging" "$backends" 2> /dev/null || rm -rf "$staging"
fi
export LD_LIBRARY_PATH="$libdir:$site/nvidia_pytriton.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$env/bin:$PATH"
exec "$bundle/bin/tritonserver" --model-repository="$here" --backend-directory="$backends" "$@"
