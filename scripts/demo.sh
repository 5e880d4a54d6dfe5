#!/usr/bin/env bash
# The seed scenario: two images that share layers, a run, and what it wrote.
# Uses its own store (demo-root/ here, or $MINIRUN_ROOT) so it never touches /var/lib/minirun.
set -euo pipefail
cd "$(dirname "$0")/.."
export MINIRUN_ROOT=${MINIRUN_ROOT:-$PWD/demo-root}
m() { echo; printf "$ minirun"; printf " %q" "$@"; echo; .venv/bin/minirun "$@"; }

rm -rf "$MINIRUN_ROOT"
m load fixtures-out/oci/myapp
m load fixtures-out/docker-archive/myotherapp.tar
m images
m run --name demo myapp sh -c 'echo hi > /greeting; rm /etc/group; /app/main.sh'
m diff demo
upper=$(.venv/bin/minirun inspect demo | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[0]["UpperDir"])')
echo; echo "\$ ls -lR \$(minirun inspect demo | jq -r '.[0].UpperDir')    # the files this run wrote"
(cd "$upper" && ls -lR)
m run --rm myotherapp
m ps -a
echo; echo "demo store: $MINIRUN_ROOT (remove with: rm -rf $MINIRUN_ROOT)"
