#!/bin/sh
# Builds the step-ca binary that tool/go.mod pins (its tool directive; a module of its own so the test
# module's dependencies never move step-ca's) into a cache outside the
# repository, so the interop test pays the cold build (minutes on 2 cores) once per machine.
# Prints the binary's path. STEPCA_BIN overrides the location.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
version=$(cd "$here/tool" && go list -m -f '{{.Version}}' github.com/smallstep/certificates)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tpmline/step-ca-$version
bin=${STEPCA_BIN:-$cache/step-ca}
if [ ! -x "$bin" ]; then
	mkdir -p "$(dirname "$bin")"
	(cd "$here/tool" && CGO_ENABLED=0 go build -trimpath -o "$bin.tmp" github.com/smallstep/certificates/cmd/step-ca)
	mv "$bin.tmp" "$bin"
fi
echo "$bin"
