# Sourced by the scripts that start throw-away servers.

# A loopback port nothing listens on now. Another process may take it
# before the server does: callers try again with another.
free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    else
        echo $((20000 + RANDOM % 20000))
    fi
}
