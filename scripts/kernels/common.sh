# SPDX-License-Identifier: Apache-2.0
# Shared settings of the kernel matrix scripts (sourced, not run).

# The kernels the matrix boots: Debian 11, 12 and 13's cloud kernels.
KERNEL_SERIES=(5.10 6.1 6.12)
# Outside the work tree, so that a fresh clone on the same machine (as CI
# makes) reuses the downloads and the tools.
CACHE=${PODTRACE_KERNELS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podtrace-kernels}
# Pinned versions of the guest tools (PyPI and crates.io).
VIRTME_NG_VERSION=1.42
VIRTIOFSD_VERSION=1.14.0
mkdir -p "$CACHE"
# vng runs virtme-run from its own environment and finds virtiofsd on the PATH.
PATH="$CACHE/vng/bin:$CACHE/tools/bin:$PATH"
export PATH
