#!/bin/sh
# Reached through the absolute symlink /usr/bin/rt-info.
cat /etc/runtime.conf
