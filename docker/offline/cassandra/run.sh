#!/usr/bin/env bash
# The offline Cassandra image's start command: Apache Cassandra 5.0.9 on Java 17, configured from
# the lab runner's cassandra.yaml template (services/conf/cassandra/) and the official cassandra
# image's environment variables:
#   MAX_HEAP_SIZE, HEAP_NEWSIZE           heap (both or neither, as cassandra-env.sh wants)
#   CASSANDRA_CLUSTER_NAME, CASSANDRA_NUM_TOKENS, CASSANDRA_DC, CASSANDRA_RACK,
#   CASSANDRA_LISTEN_ADDRESS, CASSANDRA_BROADCAST_ADDRESS, CASSANDRA_BROADCAST_RPC_ADDRESS,
#   CASSANDRA_SEEDS, CASSANDRA_ENDPOINT_SNITCH
# As in the official image: listen on the container's address, CQL on every interface of the
# container (rpc_address 0.0.0.0), data in /var/lib/cassandra.
set -euo pipefail

conf=/opt/cassandra/conf
run=/opt/cassandra/run
data=/var/lib/cassandra

if [[ -n "${MAX_HEAP_SIZE:-}" && -z "${HEAP_NEWSIZE:-}" || -z "${MAX_HEAP_SIZE:-}" && -n "${HEAP_NEWSIZE:-}" ]]; then
  echo "cassandra: set MAX_HEAP_SIZE and HEAP_NEWSIZE together, or neither" >&2
  exit 2
fi

address="$(hostname -i | awk '{print $1}')"
listen="${CASSANDRA_LISTEN_ADDRESS:-${address}}"
[[ "${listen}" == auto ]] && listen="${address}"
broadcast="${CASSANDRA_BROADCAST_ADDRESS:-${listen}}"
broadcast_rpc="${CASSANDRA_BROADCAST_RPC_ADDRESS:-${broadcast}}"
seeds="${CASSANDRA_SEEDS:-${broadcast}}"
snitch="${CASSANDRA_ENDPOINT_SNITCH:-SimpleSnitch}"
[[ -n "${CASSANDRA_DC:-}${CASSANDRA_RACK:-}" ]] && snitch="${CASSANDRA_ENDPOINT_SNITCH:-GossipingPropertyFileSnitch}"

mkdir -p "${data}"/{data,commitlog,saved_caches,hints,cdc_raw} "${run}/triggers" "${run}/logs"
sed -e "s#@HOST@:@STORAGE_PORT@#${seeds}:7000#" \
    -e "s#@HOST@#${listen}#g" -e "s#@PORT@#9042#g" -e "s#@STORAGE_PORT@#7000#g" \
    -e "s#@DATA_DIR@#${data}#g" \
    -e "s#^rpc_address:.*#rpc_address: 0.0.0.0\nbroadcast_rpc_address: ${broadcast_rpc}\nbroadcast_address: ${broadcast}#" \
    -e "s#^cluster_name:.*#cluster_name: '${CASSANDRA_CLUSTER_NAME:-Test Cluster}'#" \
    -e "s#^num_tokens:.*#num_tokens: ${CASSANDRA_NUM_TOKENS:-16}#" \
    -e "s#^endpoint_snitch:.*#endpoint_snitch: ${snitch}#" \
    "${conf}/cassandra.yaml" > "${run}/cassandra.yaml"
printf 'dc=%s\nrack=%s\n' "${CASSANDRA_DC:-datacenter1}" "${CASSANDRA_RACK:-rack1}" \
  > "${run}/cassandra-rackdc.properties"
if grep -q '@[A-Z_]*@' "${run}/cassandra.yaml"; then
  echo "cassandra: unfilled placeholders in cassandra.yaml" >&2
  exit 2
fi

heap=()
if [[ -n "${MAX_HEAP_SIZE:-}" ]]; then
  heap=("-Xms${MAX_HEAP_SIZE}" "-Xmx${MAX_HEAP_SIZE}" "-Xmn${HEAP_NEWSIZE}")
fi
mapfile -t options < <(sed -e 's/#.*//' "${conf}/jvm-server.options" | tr -s ' \t' '\n\n' | grep -v '^$')
jamm="$(ls /opt/cassandra/lib/jamm-*.jar | tail -n 1)"

# The rack/dc file is found on the classpath, as in Cassandra's own conf folder.
exec java "${heap[@]}" "${options[@]}" "-javaagent:${jamm}" \
  "-Dcassandra.config=file://${run}/cassandra.yaml" \
  "-Dcassandra.storagedir=${data}" \
  "-Dcassandra.logdir=${run}/logs" \
  "-Dcassandra.triggers_dir=${run}/triggers" \
  "-Dlogback.configurationFile=${conf}/logback.xml" \
  -cp "${run}:/opt/cassandra/lib/*" org.apache.cassandra.service.CassandraDaemon
