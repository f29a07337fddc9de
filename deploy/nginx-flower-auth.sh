#!/bin/sh
# Writes flower-auth.conf, which deploy/nginx.conf includes: the Authorization header that opens
# Flower's own basic auth, made from FLOWER_BASIC_AUTH (its first user:password pair), so the
# password stays out of nginx.conf. docker-compose.yml mounts this script where the official nginx
# image runs it at every start (/docker-entrypoint.d/). On a host, as root:
#   FLOWER_BASIC_AUTH='user:password' sh deploy/nginx-flower-auth.sh && nginx -s reload
set -eu
target="${1:-/etc/nginx/flower-auth.conf}"
: "${FLOWER_BASIC_AUTH:?must be set: the same user:password as the flower process}"
token="$(printf %s "${FLOWER_BASIC_AUTH%%,*}" | base64 | tr -d '\n')"
umask 077  # readable by root (nginx's master) only
printf 'proxy_set_header Authorization "Basic %s";\n' "$token" >"$target"
