#!/usr/bin/env bash
# The offline Kafka image's start command: Apache Kafka 4.3.1 (KRaft), configured the way the
# official apache/kafka image is, from KAFKA_* environment variables:
#   KAFKA_FOO_BAR -> foo.bar,  __ -> _,  ___ -> -   (KAFKA_LISTENER_SECURITY_PROTOCOL_MAP ->
#   listener.security.protocol.map); the JVM and logging variables of apache/kafka are not
#   properties. CLUSTER_ID formats the storage on first start (kept afterwards).
set -euo pipefail

conf_dir=/opt/kafka/config
props="${conf_dir}/server.properties"
not_properties=" KAFKA_VERSION KAFKA_HEAP_OPTS KAFKA_LOG4J_OPTS KAFKA_OPTS KAFKA_JMX_OPTS \
KAFKA_JVM_PERFORMANCE_OPTS KAFKA_GC_LOG_OPTS KAFKA_LOG4J_ROOT_LOGLEVEL KAFKA_LOG4J_LOGGERS \
KAFKA_TOOLS_LOG4J_LOGLEVEL KAFKA_JMX_HOSTNAME KAFKA_JMX_PORT "

: > "${props}"
while IFS= read -r name; do
  [[ "${not_properties}" == *" ${name} "* ]] && continue
  key="${name#KAFKA_}"
  key="${key,,}"
  key="${key//___/-}"
  key="${key//__/@}"
  key="${key//_/.}"
  key="${key//@/_}"
  printf '%s=%s\n' "${key}" "${!name}" >> "${props}"
done < <(compgen -e | grep '^KAFKA_' | sort)

if ! grep -q '^process.roles=' "${props}"; then
  echo "kafka: no KAFKA_PROCESS_ROLES in the environment: this image runs KRaft only" >&2
  exit 2
fi
: "${CLUSTER_ID:?kafka: set CLUSTER_ID (22 characters of URL-safe base64) to format the storage}"

export KAFKA_LOG4J_OPTS="-Dlog4j2.configurationFile=${conf_dir}/log4j2.properties"
kafka-run-class.sh kafka.tools.StorageTool format --cluster-id "${CLUSTER_ID}" \
  --config "${props}" --ignore-formatted

exec java ${KAFKA_HEAP_OPTS:--Xmx1g -Xms1g} \
  -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
  -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
  ${KAFKA_OPTS:-} "${KAFKA_LOG4J_OPTS}" -cp '/opt/kafka/libs/*' kafka.Kafka "${props}"
