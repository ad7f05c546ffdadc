# Handler file of hello-shell ("function.handler" in function.toml). The
# bootstrap passes the path of a file holding the event (JSON) in $1; what the
# function prints on stdout is the response body, what it prints on stderr is
# a log line.

handler () {
    echo "hello-shell: handling an event of $(wc -c <"$1") bytes" >&2
    printf '{"message": "hello from shell", "event": '
    cat "$1"
    printf '}\n'
}
