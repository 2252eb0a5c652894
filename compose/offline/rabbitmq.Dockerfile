# Stand-in for rabbitmq:3-management: Debian's RabbitMQ with the management plugin,
# in the foreground, the default user from RABBITMQ_DEFAULT_USER/RABBITMQ_DEFAULT_PASS.
ARG BASE
FROM ${BASE}
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends rabbitmq-server \
 && rm -rf /var/lib/apt/lists/* \
 && rabbitmq-plugins enable --offline rabbitmq_management >/dev/null \
 && chown -R rabbitmq:rabbitmq /etc/rabbitmq /var/lib/rabbitmq
COPY rabbitmq-entrypoint.sh /usr/local/bin/
USER rabbitmq
EXPOSE 5672 15672
ENTRYPOINT ["rabbitmq-entrypoint.sh"]
CMD ["rabbitmq-server"]
