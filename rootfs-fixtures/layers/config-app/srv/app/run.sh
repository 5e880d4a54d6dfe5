#!/bin/sh
echo "$GREETING from $(pwd) as $(id -u)"
