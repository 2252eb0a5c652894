#!/bin/sh
set -eu
cat > /etc/rabbitmq/rabbitmq.conf <<CONF
loopback_users = none
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}
CONF
exec "$@"
