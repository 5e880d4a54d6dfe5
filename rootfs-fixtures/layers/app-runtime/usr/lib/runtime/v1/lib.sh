# Shared helper sourced by /app/main.sh of myapp and myotherapp.
runtime_say() {
    echo "[runtime $(sed -n 's/^runtime_version=//p' /etc/runtime.conf)] $*"
}
