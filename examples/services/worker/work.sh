#!/bin/sh
# The example worker: pretends to work through a queue.
while true; do echo "$(date) working on ${QUEUE:-jobs}"; sleep 5; done
