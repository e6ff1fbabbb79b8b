#!/usr/bin/env bash
# Make sure the servers the tests need are up: Redis (127.0.0.1:6379), RabbitMQ (:5672).
# Installs them (and the media tests' tools) with apt-get when the machine lacks them;
# starts the servers when they are down.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v rabbitmq-server >/dev/null || need_apt+=(rabbitmq-server)
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
# The media tests' encoders and scanner (issue 12): real files made by ffmpeg, espeak-ng
# and ImageMagick, scanned by a clamd of the test's own (tests/support/clamd_server.py).
command -v ffmpeg >/dev/null || need_apt+=(ffmpeg)
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
dpkg -s imagemagick >/dev/null 2>&1 || need_apt+=(imagemagick)
command -v clamd >/dev/null || need_apt+=(clamav-daemon)
command -v sigtool >/dev/null || need_apt+=(clamav)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

if ! port_open 6379; then
  echo "starting redis-server"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
if ! port_open 5672; then
  echo "starting rabbitmq-server"
  rabbitmq-server -detached
fi

for _ in $(seq 1 120); do
  if port_open 6379 && port_open 5672; then
    if command -v rabbitmqctl >/dev/null; then
      rabbitmqctl await_startup --timeout 60 >/dev/null 2>&1 || true
    fi
    echo "services up: redis 127.0.0.1:6379, rabbitmq 127.0.0.1:5672"
    exit 0
  fi
  sleep 1
done
echo "services did not come up (redis 6379, rabbitmq 5672)" >&2
exit 1
