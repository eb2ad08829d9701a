#!/usr/bin/env bash
# The AWS API emulator (moto server, made stricter by tools/strict_moto.py) for the emulated stack: start | stop | env.
# Listens on MODELFLEET_AWS_ENDPOINT (default http://127.0.0.1:5000), which must be on loopback:
# nothing here may talk to another address. State and log in build/state/.
set -euo pipefail
cd "$(dirname "$0")/.."
endpoint=${MODELFLEET_AWS_ENDPOINT:-http://127.0.0.1:5000}
if [[ ! $endpoint =~ ^http://(127\.[0-9]+\.[0-9]+\.[0-9]+|localhost|\[::1\]):([0-9]+)/?$ ]]; then
  echo "aws-emulator: $endpoint is not an http:// address on this machine's loopback; refusing." >&2
  exit 2
fi
host=${BASH_REMATCH[1]}
port=${BASH_REMATCH[2]}
state=build/state
pidfile=$state/aws-emulator.pid
mkdir -p "$state"

running() { [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case ${1:-start} in
  start)
    if running; then
      echo "aws-emulator: already running at $endpoint (pid $(cat "$pidfile"))"
      exit 0
    fi
    # moto's server through the project's launcher, stricter where AWS is (tools/strict_moto.py). Absolute
    # paths: .ci/run finds a left-behind emulator of this clone by them.
    nohup "$(cd "${VENV:-.venv}" && pwd)/bin/python" "$PWD/tools/strict_moto.py" -H "${host//[\[\]]/}" -p "$port" \
      >"$state/aws-emulator.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 100); do
      if (exec 3<>"/dev/tcp/${host//[\[\]]/}/$port") 2>/dev/null; then
        echo "aws-emulator: moto server (strict) at $endpoint (log $state/aws-emulator.log)"
        exit 0
      fi
      sleep 0.1
    done
    echo "aws-emulator: moto server did not start; see $state/aws-emulator.log" >&2
    exit 1
    ;;
  stop)
    if running; then kill "$(cat "$pidfile")"; fi
    rm -f "$pidfile"
    ;;
  env)
    # Fake credentials and the endpoint, for boto3, the aws CLI and the aws_ec2 inventory.
    echo "export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1"
    echo "export AWS_ENDPOINT_URL=$endpoint MODELFLEET_AWS_ENDPOINT=$endpoint"
    # The aws_ec2 inventory's cache apart from a real account's (ansible.cfg, fact_caching_connection).
    echo "export ANSIBLE_INVENTORY_CACHE_CONNECTION=$PWD/.cache/inventory-emulated"
    ;;
  *)
    echo "usage: $0 start|stop|env" >&2
    exit 2
    ;;
esac
