#!/bin/bash
# The first find after `doppel models install Facenet512 FILE` against the next ones
# (docs/terminal.md). Scratch folders under /tmp/firstfind; run from the project root.
set -e
cd "$(dirname "$0")/.."
export DEEPFACE_HOME=/tmp/firstfind/df DOPPEL_HOME=/tmp/firstfind/home DOPPEL_OFFLINE=1
rm -rf $DEEPFACE_HOME $DOPPEL_HOME; mkdir -p $DEEPFACE_HOME
.venv/bin/python -c "from pathlib import Path; from tests.helpers import write_random_facenet512 as w; w(Path('/tmp/firstfind/fn512.h5'))"
uptime
/usr/bin/time -f "install wall %e s" .venv/bin/doppel models install Facenet512 /tmp/firstfind/fn512.h5
mkdir -p /tmp/firstfind/photos; cp images/demo/img{1,2,3,4,5,6,7,8}.jpg /tmp/firstfind/photos/
.venv/bin/doppel ingest /tmp/firstfind/photos -g fn -m Facenet512 2>&1 | tail -2
uptime
for i in 1 2 3; do /usr/bin/time -f "find $i wall %e s" .venv/bin/doppel find images/demo/img9.jpg -g fn --json > /dev/null; done
uptime
