#!/bin/sh
# `pebble [ARGS]` (the default command): make a TLS root and a server certificate for Pebble's HTTPS API in
# $PEBBLE_TLS_DIR (names: localhost, 127.0.0.1, pebble and the comma list $PEBBLE_TLS_NAMES: host names, or IPv4
# addresses for clients that reach the API by address, e.g. a lab cluster's nested containers), write the config
# from /etc/pebble/pebble-config.json with $PEBBLE_HTTP_PORT and $PEBBLE_CERT_VALIDITY (seconds) when set,
# then run Pebble with ARGS. Any other command (e.g. pebble-challtestsrv ...) runs as given.
set -eu
if [ "${1:-}" != "pebble" ]; then
    exec "$@"
fi
shift
tls="${PEBBLE_TLS_DIR:-/run/pebble/tls}"
umask 077
mkdir -p "$tls"
if [ ! -s "$tls/cert.pem" ]; then
    sans="DNS:localhost,IP:127.0.0.1,DNS:pebble"
    for name in $(echo "${PEBBLE_TLS_NAMES:-}" | tr ',' ' '); do
        case "$name" in
            *[!0-9.]*) sans="$sans,DNS:$name" ;;
            *) sans="$sans,IP:$name" ;;
        esac
    done
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/CN=djdeploy lab Pebble API root" -addext basicConstraints=critical,CA:TRUE \
        -keyout "$tls/root-key.pem" -out "$tls/root.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=pebble" \
        -keyout "$tls/key.pem" -out "$tls/req.pem" 2>/dev/null
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$sans" > "$tls/ext.cnf"
    openssl x509 -req -in "$tls/req.pem" -CA "$tls/root.pem" -CAkey "$tls/root-key.pem" -CAcreateserial \
        -days 30 -extfile "$tls/ext.cnf" -out "$tls/cert.pem" 2>/dev/null
    rm -f "$tls/root-key.pem" "$tls/req.pem" "$tls/ext.cnf" "$tls/root.srl"
    chmod 0644 "$tls/root.pem" "$tls/cert.pem"
fi
sed -e "s/\"httpPort\": [0-9]*/\"httpPort\": ${PEBBLE_HTTP_PORT:-8080}/" \
    -e "s/\"certificateValidityPeriod\": [0-9]*/\"certificateValidityPeriod\": ${PEBBLE_CERT_VALIDITY:-300}/" \
    -e "s#/run/pebble/tls#$tls#g" /etc/pebble/pebble-config.json > "$tls/pebble-config.json"
exec pebble -config "$tls/pebble-config.json" "$@"
