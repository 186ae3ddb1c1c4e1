#!/usr/bin/env bash
# Installs what vpclab's tests, demo and benchmark use inside instances (idempotent, needs root):
# iproute2 (ip, to inspect), iputils-ping, iperf3, tcpdump, tshark (reads captures back), busybox
# (its udhcpc is the DHCP client), dnsutils (dig asks the Amazon DNS server), python3 (bench's JSON), gcc (ceiling.sh), and a Python virtual
# environment in .venv/ with the Python clients the tests use (prometheus_client's OpenMetrics
# parser, flowlogs-reader, boto3 and awscli for the EC2 API).
set -euo pipefail
want=()
have() { command -v "$1" >/dev/null 2>&1; }
have ip || want+=(iproute2)
have ping || want+=(iputils-ping)
have iperf3 || want+=(iperf3)
have tcpdump || want+=(tcpdump)
have python3 || want+=(python3)
have gcc || want+=(gcc)
have iptables || want+=(iptables)
# busybox udhcpc: the one-shot DHCP client tests/dhcp.rs runs to read a lease.
have busybox || want+=(busybox)
# dhclient (isc-dhcp-client): the client `instance_network = "dhcp"` runs on every interface.
have dhclient || want+=(isc-dhcp-client)
# dig: the DNS tests ask the fabric's Amazon DNS server with it.
have dig || want+=(dnsutils)
# curl: the instance metadata tests ask 169.254.169.254 with it.
have curl || want+=(curl)
have tshark || want+=(tshark)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || want+=(python3-venv)
if [ ${#want[@]} -gt 0 ]; then
  echo "installing: ${want[*]}"
  apt-get update -qq
  # tshark asks whether non-root users may capture; the default (no) is right here.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi

# Python test clients, pinned by name only: the versions on PyPI today serve.
venv="$(cd "$(dirname "$0")/.." && pwd)/.venv"
pkgs=(prometheus_client flowlogs-reader boto3 awscli)
if ! "$venv/bin/python" -c 'import prometheus_client, flowlogs_reader, boto3' >/dev/null 2>&1 || [ ! -x "$venv/bin/aws" ]; then
  echo "installing Python test clients into $venv: ${pkgs[*]}"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${pkgs[@]}"
fi
