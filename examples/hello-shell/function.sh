# Handler file of hello-shell ("function.handler" in function.toml). The
# bootstrap passes the event, as JSON text, in $1; what the function prints on
# stdout is the response body, what it prints on stderr is a log line.

handler () {
    event="${1:-null}"
    echo "hello-shell: handling an event of ${#event} bytes" >&2
    printf '{"message": "hello from shell", "event": %s}\n' "$event"
}
