#!/usr/bin/env bash
# kafka-run-class.sh CLASS [ARGS]: run one of Kafka's classes on the image's classpath, as
# Kafka's own bin/kafka-run-class.sh does (the tools log warnings only, to stderr).
set -euo pipefail
class="$1"
shift
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} \
  "${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.properties}" \
  -cp '/opt/kafka/libs/*' "${class}" "$@"
