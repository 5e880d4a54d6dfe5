#!/bin/sh
. /usr/lib/runtime/current/lib.sh
runtime_say "hello from myapp"
