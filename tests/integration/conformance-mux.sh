#!/bin/bash
# SPDX-License-Identifier: MIT
# The multiplexer conformance programs (mixed plain/accelerated sets,
# fairness, cascaded epoll, two waiting threads) in the lab, plain TCP vs shim.
exec bash "$(dirname "$0")/../conformance/mux_lab.sh" "$@"
